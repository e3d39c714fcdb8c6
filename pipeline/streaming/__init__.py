"""The streaming runtime: the Faust app and worker wiring, the contact table's unit of work,
the aiokafka transport tuning, worker health, and the embedded development broker."""
