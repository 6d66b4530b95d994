package swarmailab.worker.callback;

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import swarmailab.worker.logging.Log;
import worker.Worker.ResultAck;
import worker.Worker.TaskResult;
import worker.WorkerCallbackGrpc;

/**
 * One long-lived StreamResults call to one master, opened ahead of use and again after it ends. The master
 * accepts the call by sending its headers; results are then written one at a time and each gets one ack.
 */
final class ResultStream {
    private final ManagedChannel channel;
    private ClientCall<TaskResult, ResultAck> call;
    private boolean accepted;
    private boolean ended = true;
    private CompletableFuture<ResultAck> waiting; // the ack of the result written last, while awaited
    private volatile boolean unimplemented;

    ResultStream(ManagedChannel channel) {
        this.channel = channel;
    }

    /** The master answered UNIMPLEMENTED: it has no StreamResults (the original master). */
    boolean unimplemented() {
        return unimplemented;
    }

    /** Whether the master has accepted the current call, so that a result written now is taken at once. */
    synchronized boolean ready() {
        return call != null && accepted && !ended;
    }

    /** Opens a new call when there is none or it has ended. */
    synchronized void open() {
        if (call != null && !ended) {
            return;
        }
        ClientCall<TaskResult, ResultAck> c = channel.newCall(WorkerCallbackGrpc.getStreamResultsMethod(),
            CallOptions.DEFAULT);
        call = c;
        accepted = false;
        ended = false;
        c.start(new Listener(c), new Metadata());
        c.request(Integer.MAX_VALUE);
    }

    /** Writes result on the accepted call and waits, at most timeoutMs, for its ack. */
    ResultAck send(TaskResult result, long timeoutMs) throws StatusException, InterruptedException {
        CompletableFuture<ResultAck> ack = new CompletableFuture<>();
        ClientCall<TaskResult, ResultAck> c;
        synchronized (this) {
            if (call == null || ended) {
                throw Status.UNAVAILABLE.withDescription("the result stream was closed").asException();
            }
            c = call;
            waiting = ack;
            try {
                c.sendMessage(result);
            } catch (IllegalStateException e) {
                // A call that has ended refuses the write; its listener fails `ack` with the call's error.
                ended = true;
                throw Status.UNAVAILABLE.withDescription("the result stream was closed").asException();
            }
        }
        try {
            return ack.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            // The master did not answer in time: start over on a new call (this one may be stuck).
            close(c);
            throw Status.DEADLINE_EXCEEDED.withDescription("no ack for the result in time").asException();
        } catch (ExecutionException e) {
            throw (StatusException) e.getCause();
        } catch (InterruptedException e) {
            close(c);
            throw e;
        } finally {
            synchronized (this) {
                if (waiting == ack) {
                    waiting = null;
                }
            }
        }
    }

    /** Ends the current call; a result still waiting on it fails as UNAVAILABLE (and is sent again). */
    synchronized void close() {
        if (call != null) {
            close(call);
        }
    }

    private void close(ClientCall<TaskResult, ResultAck> c) {
        c.cancel("closed by the worker", null);
    }

    private synchronized void onHeaders(ClientCall<TaskResult, ResultAck> c) {
        if (c == call && !ended) {
            accepted = true;
        }
    }

    private synchronized void onAck(ClientCall<TaskResult, ResultAck> c, ResultAck ack) {
        if (c == call && waiting != null) {
            waiting.complete(ack); // its sender may have given up already: then nobody reads it
            waiting = null;
        }
    }

    private synchronized void onClose(ClientCall<TaskResult, ResultAck> c, Status status) {
        if (status.getCode() == Status.Code.UNIMPLEMENTED) {
            Log.info("master takes no result streams: one call per result");
            unimplemented = true;
        }
        Status error;
        if (status.isOk()) {
            error = Status.UNAVAILABLE.withDescription("the master closed the result stream");
        } else if (status.getCode() == Status.Code.CANCELLED) {
            // Cancelled here (stalled) or by a master going down: either way, worth sending again.
            error = Status.UNAVAILABLE.withDescription("result stream cancelled: " + status.getDescription());
        } else {
            error = status;
        }
        if (c == call) {
            ended = true;
            if (waiting != null) {
                waiting.completeExceptionally(error.asException());
                waiting = null;
            }
        }
    }

    /** Hands the call's events to the stream, named by the call so that a late event of an old call is ignored. */
    private final class Listener extends ClientCall.Listener<ResultAck> {
        private final ClientCall<TaskResult, ResultAck> c;

        Listener(ClientCall<TaskResult, ResultAck> c) {
            this.c = c;
        }

        @Override
        public void onHeaders(Metadata headers) {
            ResultStream.this.onHeaders(c);
        }

        @Override
        public void onMessage(ResultAck message) {
            onAck(c, message);
        }

        @Override
        public void onClose(Status status, Metadata trailers) {
            ResultStream.this.onClose(c, status);
        }
    }
}
