"""Development tools: the journey simulator and the live demo (embedded broker, worker, feed)."""
