"""The Kafka client adapter: topic administration and the command-line client tools
(produce, tail, sweep), on kafka-python."""
