"""The Kafka client adapter: the arguments of every aiokafka client (``options``), the one
reconnect/retry loop (``retry``), and topic administration and the command-line client tools
(produce, tail, sweep) on kafka-python (``tools``)."""
