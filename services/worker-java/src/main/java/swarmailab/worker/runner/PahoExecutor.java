package swarmailab.worker.runner;

import java.lang.reflect.Field;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.atomic.AtomicInteger;
import swarmailab.worker.logging.Log;

/**
 * The threads of the Paho client, and a fix for its slow connect.
 *
 * <p>Why: in Paho mqttv3 1.2.5, CommsReceiver, CommsSender and CommsCallback.start(...) submit their run()
 * and then poll isRunning() with Thread.sleep(100) until run() has marked itself RUNNING. The caller nearly
 * always checks first, so every connect and reconnect loses ~300 ms (seen with javap and strace). Their
 * start() calls executorService.submit(this) while holding the component's lifecycle lock with target_state
 * already RUNNING; marking current_state RUNNING right there is exactly what run() does as its first step, so
 * the first poll succeeds. Should the fields ever be missing (another Paho version), nothing is changed and
 * Paho merely connects slower.
 */
final class PahoExecutor extends ScheduledThreadPoolExecutor {
    private static final String INTERNAL = "org.eclipse.paho.client.mqttv3.internal.";
    private static final Map<Class<?>, Field> STATE_FIELDS = new ConcurrentHashMap<>();
    private static final AtomicInteger THREADS = new AtomicInteger();

    PahoExecutor() {
        // Receiver, sender and callback run for a connection's lifetime; connects and pings come and go.
        super(8, r -> {
            Thread t = new Thread(r, "paho-" + THREADS.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
    }

    @Override
    public Future<?> submit(Runnable task) {
        Future<?> f = super.submit(task);
        markRunning(task);
        return f;
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static void markRunning(Runnable task) {
        Class<?> type = task.getClass();
        String name = type.getName();
        if (!name.equals(INTERNAL + "CommsReceiver") && !name.equals(INTERNAL + "CommsSender")
            && !name.equals(INTERNAL + "CommsCallback")) {
            return;
        }
        try {
            Field state = STATE_FIELDS.computeIfAbsent(type, PahoExecutor::stateField);
            if (state == null) {
                return;
            }
            Object current = state.get(task);
            if (current != null && ((Enum<?>) current).name().equals("STOPPED")) {
                state.set(task, Enum.valueOf((Class<Enum>) state.getType(), "RUNNING"));
            }
        } catch (ReflectiveOperationException | RuntimeException e) {
            Log.debug("Paho start shortcut unavailable: " + e);
        }
    }

    private static Field stateField(Class<?> type) {
        try {
            Field f = type.getDeclaredField("current_state");
            f.setAccessible(true);
            return f.getType().isEnum() ? f : null;
        } catch (ReflectiveOperationException | RuntimeException e) {
            return null;
        }
    }
}
