/*! Leadflow browser tracker v1 — no dependencies. Served by the collector at /v1/tracker.js.
 *
 *   <script src="https://collect.example.com/v1/tracker.js" data-write-key="pk_website_123" async></script>
 *
 * Keeps an anonymous_id in a first-party cookie (lf_aid), sends a page_view on load (url, path,
 * title, referrer, utm_* parameters), and exposes
 *   leadflow.track(eventType, properties)   queue a website event (see docs/streaming.md, "Event contracts", for the types)
 *   leadflow.identify(contactId)            later events carry contact_id (kept in the lf_cid cookie)
 *   leadflow.page()                         another page_view (single-page applications)
 *   leadflow.flush()                        send what is queued now
 * Calls made before the script loaded can be queued in `window.leadflow = [["track", ...], ...]`.
 * Events are batched (up to 20, or after 1 s) and sent with fetch(keepalive) as text/plain (no CORS
 * preflight); when the page is hidden or left they go with navigator.sendBeacon. A batch the
 * collector could not take (503, network error) is retried with backoff while the page is open.
 * Options: data-endpoint (collector origin; default: where this script came from),
 * data-cookie-domain (share the id across subdomains), data-no-page-view (no automatic page_view).
 */
(function (window, document) {
  "use strict";
  var existing = window.leadflow;
  if (existing && existing.version) return; // loaded twice

  var script = document.currentScript || document.querySelector("script[data-write-key]");
  var attr = function (name) { return script ? script.getAttribute(name) : null; };
  var writeKey = attr("data-write-key") || "";
  var endpoint = attr("data-endpoint") || (script && script.src ? new URL(script.src).origin : location.origin);
  var url = endpoint.replace(/\/+$/, "") + "/v1/events/website?write_key=" + encodeURIComponent(writeKey);
  var cookieDomain = attr("data-cookie-domain");
  var MAX_BATCH = 20, FLUSH_MS = 1000, MAX_QUEUE = 500, MAX_BODY = 60000, MAX_TRIES = 6;
  var YEAR_SECONDS = 365 * 24 * 3600;

  function randomId() {
    var c = window.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) {
        try { return decodeURIComponent(parts[i].slice(eq + 1)); } catch (e) { return null; }
      }
    }
    return null;
  }

  function writeCookie(name, value, maxAge) {
    var cookie = name + "=" + encodeURIComponent(value) + "; Max-Age=" + maxAge + "; Path=/; SameSite=Lax";
    if (cookieDomain) cookie += "; Domain=" + cookieDomain;
    if (location.protocol === "https:") cookie += "; Secure";
    document.cookie = cookie;
  }

  var anonymousId = readCookie("lf_aid");
  if (!anonymousId || anonymousId.length > 128) anonymousId = randomId();
  writeCookie("lf_aid", anonymousId, 2 * YEAR_SECONDS); // refreshed on every visit
  var contactId = readCookie("lf_cid");

  var queue = [], timer = null, retryDelay = 1000;

  function utm() {
    var out = {}, params = new URLSearchParams(location.search);
    ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"].forEach(function (name) {
      var value = params.get(name);
      if (value) out[name] = value;
    });
    return out;
  }

  function envelope(eventType, properties) {
    var event = {
      event_id: randomId(),
      event_type: String(eventType),
      anonymous_id: anonymousId,
      occurred_at: new Date().toISOString(),
      properties: properties || {},
      context: {
        page: { url: location.href, path: location.pathname, title: document.title, referrer: document.referrer },
        user_agent: navigator.userAgent,
        locale: navigator.language,
        library: { name: "leadflow.js", version: "1" }
      }
    };
    if (contactId) event.contact_id = contactId;
    return event;
  }

  function schedule(delay) {
    if (timer === null) timer = setTimeout(function () { timer = null; flush(false); }, delay);
  }

  function enqueue(events) {
    queue = queue.concat(events);
    if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE); // bounded: drop the oldest
  }

  function takeBatch() {
    var batch = [], size = 2;
    while (queue.length && batch.length < MAX_BATCH) {
      var bytes = JSON.stringify(queue[0]).length + 1;
      if (batch.length && size + bytes > MAX_BODY) break;
      batch.push(queue.shift());
      size += bytes;
    }
    return batch;
  }

  function retry(batch) {
    var again = batch.filter(function (event) {
      event.__tries = (event.__tries || 0) + 1;
      return event.__tries < MAX_TRIES;
    });
    queue = again.concat(queue);
    retryDelay = Math.min(retryDelay * 2, 30000);
    schedule(retryDelay * (0.5 + Math.random()));
  }

  function body(batch) {
    return JSON.stringify(batch, function (key, value) { return key === "__tries" ? undefined : value; });
  }

  function send(batch, leaving) {
    var data = body(batch);
    if (leaving && navigator.sendBeacon) {
      if (navigator.sendBeacon(url, new Blob([data], { type: "text/plain" }))) return;
    }
    if (!window.fetch) return;
    window.fetch(url, {
      method: "POST", body: data, keepalive: true, credentials: "omit", mode: "cors",
      headers: { "Content-Type": "text/plain" }
    }).then(function (response) {
      if (response.status === 503 || response.status === 429 || response.status >= 500) retry(batch);
      else if (response.status >= 400 && window.console) console.warn("leadflow: events rejected", response.status);
      else retryDelay = 1000;
    }, function () { retry(batch); });
  }

  function flush(leaving) {
    if (timer !== null) { clearTimeout(timer); timer = null; }
    while (queue.length) {
      send(takeBatch(), leaving);
      if (!leaving) break;
    }
    if (queue.length) schedule(FLUSH_MS);
  }

  function track(eventType, properties) {
    enqueue([envelope(eventType, properties)]);
    if (queue.length >= MAX_BATCH) flush(false);
    else schedule(FLUSH_MS);
  }

  function page(extra) {
    var properties = utm();
    properties.url = location.href;
    properties.path = location.pathname;
    if (document.title) properties.title = document.title;
    if (document.referrer) properties.referrer = document.referrer;
    for (var name in extra || {}) properties[name] = extra[name];
    track("page_view", properties);
  }

  function identify(id) {
    if (!id || String(id).length > 128) return;
    contactId = String(id);
    writeCookie("lf_cid", contactId, 2 * YEAR_SECONDS);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush(true);
  });
  window.addEventListener("pagehide", function () { flush(true); });

  var api = {
    version: "1",
    track: track,
    identify: identify,
    page: page,
    flush: function () { flush(false); },
    anonymousId: function () { return anonymousId; }
  };
  window.leadflow = api;
  var early = Array.isArray(existing) ? existing : [];
  early.filter(function (call) { return call[0] === "identify"; }).forEach(function (call) { identify(call[1]); });
  if (!script || !script.hasAttribute("data-no-page-view")) page();
  early.forEach(function (call) {
    if (call[0] !== "identify" && api[call[0]]) api[call[0]].apply(null, call.slice(1));
  });
})(window, document);
