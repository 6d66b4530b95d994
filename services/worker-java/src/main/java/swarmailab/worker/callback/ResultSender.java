package swarmailab.worker.callback;

import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import java.io.File;
import java.io.IOException;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import swarmailab.worker.logging.Log;
import worker.Worker.ResultAck;
import worker.Worker.TaskResult;
import worker.WorkerCallbackGrpc;

/**
 * Delivers results to the masters over gRPC (services/worker/callback.py): one channel and one StreamResults
 * call per master, SendResult until the master has accepted the stream and for good when it answers
 * UNIMPLEMENTED, transient failures retried with jittered exponential backoff. Used by the work thread only.
 */
public final class ResultSender {
    /** Bounds one try: a SendResult call, or the wait for a streamed result's ack. */
    public static final long CALL_TIMEOUT_MS = 10_000;
    // Failures worth retrying: the master is restarting, overloaded or briefly unreachable.
    private static final Set<Status.Code> RETRYABLE = EnumSet.of(Status.Code.UNAVAILABLE,
        Status.Code.DEADLINE_EXCEEDED, Status.Code.RESOURCE_EXHAUSTED, Status.Code.ABORTED, Status.Code.INTERNAL,
        Status.Code.UNKNOWN);

    private final int retries;
    private final boolean streams;
    private final ChannelCredentials credentials;
    private final Map<String, ManagedChannel> channels = new HashMap<>();
    private final Map<String, ResultStream> resultStreams = new HashMap<>();
    long baseDelayMs = 200;
    long maxDelayMs = 5000;

    /**
     * @param tlsCa "" for plaintext, else the CA file that verifies the master (GRPC_TLS_CA)
     * @param streams false: one SendResult call per result (RESULT_STREAM=false)
     */
    public ResultSender(int retries, String tlsCa, boolean streams) throws IOException {
        this.retries = retries;
        this.streams = streams;
        this.credentials = tlsCa == null || tlsCa.isEmpty() ? InsecureChannelCredentials.create()
            : TlsChannelCredentials.newBuilder().trustManager(new File(tlsCa)).build();
    }

    private synchronized ManagedChannel channel(String endpoint) {
        return channels.computeIfAbsent(endpoint, e -> Grpc.newChannelBuilder(e, credentials)
            // Listeners only hand acks over: no need for an executor hop.
            .directExecutor()
            .build());
    }

    private synchronized ResultStream stream(String endpoint) {
        return resultStreams.computeIfAbsent(endpoint, e -> new ResultStream(channel(e)));
    }

    private boolean streamsTo(String endpoint) {
        return streams && !stream(endpoint).unimplemented();
    }

    /**
     * Starts connecting to endpoint and opens its result stream now (a task starts), so that the result pays
     * for neither: a master busy with other work takes a while to start a new call.
     */
    public void prepare(String endpoint) {
        try {
            channel(endpoint).getState(true);
            if (streamsTo(endpoint)) {
                stream(endpoint).open();
            }
        } catch (RuntimeException e) {
            Log.debug("cannot prepare the result channel to " + endpoint + ": " + e.getMessage());
        }
    }

    /**
     * prepare(endpoint) on a thread of its own: the master's presence names its endpoint before the first task
     * comes, and connecting then (and loading gRPC's classes) takes that time off the first result.
     */
    public void prepareInBackground(String endpoint) {
        Thread t = new Thread(() -> prepare(endpoint), "grpc-prepare");
        t.setDaemon(true);
        t.start();
    }

    /** Delivers result, retrying transient failures; InterruptedException when the worker stops meanwhile. */
    public ResultAck send(String endpoint, TaskResult result) throws CallbackException, InterruptedException {
        long delay = baseDelayMs;
        for (int attempt = 1; ; attempt++) {
            Status status;
            try {
                return sendOnce(endpoint, result);
            } catch (StatusException e) {
                status = e.getStatus();
            } catch (StatusRuntimeException e) {
                status = e.getStatus();
            } catch (IllegalArgumentException e) {
                status = Status.INVALID_ARGUMENT.withDescription("bad endpoint: " + e.getMessage());
            }
            if (!RETRYABLE.contains(status.getCode()) || attempt > retries) {
                throw new CallbackException("master at " + endpoint + " did not take the result: "
                    + status.getCode().name() + " " + details(status));
            }
            Log.warning(String.format(java.util.Locale.ROOT, "result to %s failed (%s), retry %d/%d in %.1f s",
                endpoint, status.getCode().name(), attempt, retries, delay / 1000.0));
            Thread.sleep((long) (delay * (0.5 + ThreadLocalRandom.current().nextDouble())));
            delay = Math.min(maxDelayMs, delay * 2);
        }
    }

    private static String details(Status status) {
        return status.getDescription() == null ? "" : status.getDescription();
    }

    /** One try: on the stream once the master has accepted it, else by SendResult. */
    private ResultAck sendOnce(String endpoint, TaskResult result) throws StatusException, InterruptedException {
        if (streamsTo(endpoint)) {
            ResultStream stream = stream(endpoint);
            stream.open();
            if (stream.ready()) {
                long start = System.nanoTime();
                ResultAck ack = stream.send(result, CALL_TIMEOUT_MS);
                Log.debug("result sent on the stream in " + (System.nanoTime() - start) / 1_000_000 + " ms");
                return ack;
            }
        }
        long start = System.nanoTime();
        var future = WorkerCallbackGrpc.newFutureStub(channel(endpoint))
            .withDeadlineAfter(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS)
            .sendResult(result);
        try {
            ResultAck ack = future.get(CALL_TIMEOUT_MS + 1000, TimeUnit.MILLISECONDS);
            Log.debug("result sent by SendResult in " + (System.nanoTime() - start) / 1_000_000 + " ms");
            return ack;
        } catch (InterruptedException e) {
            future.cancel(true);
            throw e;
        } catch (TimeoutException e) {
            future.cancel(true);
            throw Status.DEADLINE_EXCEEDED.withDescription("no answer in time").asException();
        } catch (ExecutionException e) {
            throw Status.fromThrowable(e.getCause()).asException();
        }
    }

    /** Ends every stream and closes every channel. */
    public synchronized void close() {
        resultStreams.values().forEach(ResultStream::close);
        resultStreams.clear();
        channels.values().forEach(ManagedChannel::shutdownNow);
        channels.clear();
    }
}
