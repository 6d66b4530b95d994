package swarmailab.worker.callback;

import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import worker.Worker.ResultAck;
import worker.Worker.TaskResult;
import worker.WorkerCallbackGrpc;

/**
 * A stand-in for the master's WorkerCallback on the loopback interface that accepts every result (its streams
 * send their headers at once, as the master's do). The warm-up answers tasks to it, and a starting worker
 * rehearses one result with it: gRPC-java's first call costs ~300 ms of class initialisation, better spent
 * while the MQTT connection is being set up than on the first real answer.
 */
public final class LoopbackMaster implements AutoCloseable {
    private final Server server;

    public LoopbackMaster() throws IOException {
        // Bound to the loopback interface only: nobody else should send it anything.
        server = io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder
            .forAddress(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), InsecureServerCredentials.create())
            .addService(service()).build().start();
    }

    /** host:port to send results to. */
    public String endpoint() {
        return "127.0.0.1:" + server.getPort();
    }

    @Override
    public void close() {
        server.shutdownNow();
    }

    /** Sends two results through a ResultSender of its own (a SendResult and a streamed one), then closes. */
    public static void rehearse() throws IOException, InterruptedException {
        try (LoopbackMaster master = new LoopbackMaster()) {
            ResultSender sender = new ResultSender(0, "", true);
            TaskResult result = TaskResult.newBuilder().setWorkerId("rehearsal").setTaskId("rehearsal").build();
            try {
                sender.prepare(master.endpoint());
                sender.send(master.endpoint(), result);
                sender.send(master.endpoint(), result);
            } catch (CallbackException e) {
                // only the classes matter
            } finally {
                sender.close();
            }
        }
    }

    static ServerServiceDefinition service() {
        ResultAck ok = ResultAck.newBuilder().setSuccess(true).setMessage("ok").build();
        return ServerServiceDefinition.builder(WorkerCallbackGrpc.SERVICE_NAME)
            .addMethod(WorkerCallbackGrpc.getSendResultMethod(), ServerCalls.asyncUnaryCall(
                (TaskResult r, StreamObserver<ResultAck> out) -> {
                    out.onNext(ok);
                    out.onCompleted();
                }))
            .addMethod(WorkerCallbackGrpc.getStreamResultsMethod(), new ServerCallHandler<TaskResult, ResultAck>() {
                @Override
                public ServerCall.Listener<TaskResult> startCall(ServerCall<TaskResult, ResultAck> call,
                    Metadata headers) {
                    call.sendHeaders(new Metadata()); // accepts the stream at once
                    call.request(1);
                    return new ServerCall.Listener<>() {
                        @Override
                        public void onMessage(TaskResult message) {
                            call.sendMessage(ok);
                            call.request(1);
                        }

                        @Override
                        public void onHalfClose() {
                            call.close(Status.OK, new Metadata());
                        }
                    };
                }
            })
            .build();
    }
}
