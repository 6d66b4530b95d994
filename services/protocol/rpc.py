"""The generated gRPC modules, under names that do not depend on the generator's."""

from services.protocol.gen import worker_pb2 as pb
from services.protocol.gen import worker_pb2_grpc as pb_grpc

SERVICE_NAME = "worker.WorkerCallback"
EVENTS_SERVICE_NAME = "worker.MasterEvents"

__all__ = ["EVENTS_SERVICE_NAME", "SERVICE_NAME", "pb", "pb_grpc"]
