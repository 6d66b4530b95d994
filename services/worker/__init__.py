"""The Python worker: takes tasks over MQTT, asks the model, reports results over gRPC."""
