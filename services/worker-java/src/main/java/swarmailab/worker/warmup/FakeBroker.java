package swarmailab.worker.warmup;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Just enough of an MQTT 3.1.1 broker for the warm-up, for one client: CONNACK, SUBACK, PUBACK, PINGRESP; after
 * the subscription it hands the client one task, and the next each time the client reports "idle".
 */
final class FakeBroker implements AutoCloseable {
    private final ServerSocket server;
    private final Deque<byte[]> tasks = new ArrayDeque<>();
    private final CountDownLatch done;
    private String taskTopic;
    private String presenceTopic;
    private byte[] presence;
    private int packetId = 1;

    FakeBroker(int taskCount) throws IOException {
        server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
        done = new CountDownLatch(taskCount);
        Thread t = new Thread(this::serve, "fake-broker");
        t.setDaemon(true);
        t.start();
    }

    int port() {
        return server.getLocalPort();
    }

    /** The master presence sent (retained, as it were) right after the subscription. */
    void setPresence(String json) {
        presence = json.getBytes(StandardCharsets.UTF_8);
    }

    void addTask(String json) {
        tasks.add(json.getBytes(StandardCharsets.UTF_8));
    }

    /** Whether every task was reported idle in time. */
    boolean awaitDone(long seconds) throws InterruptedException {
        return done.await(seconds, TimeUnit.SECONDS);
    }

    private void serve() {
        try (Socket s = server.accept()) {
            DataInputStream in = new DataInputStream(s.getInputStream());
            OutputStream out = s.getOutputStream();
            while (true) {
                int header = in.read();
                if (header < 0) {
                    return;
                }
                byte[] body = new byte[remainingLength(in)];
                in.readFully(body);
                switch (header >> 4) {
                    case 1: // CONNECT
                        out.write(new byte[] {0x20, 2, 0, 0});
                        break;
                    case 8: { // SUBSCRIBE
                        int filters = countFilters(body);
                        taskTopic = readString(body, 2);
                        if (filters > 1) {
                            presenceTopic = readString(body, 2 + 2 + taskTopic.getBytes(StandardCharsets.UTF_8).length
                                + 1);
                        }
                        byte[] ack = new byte[4 + filters];
                        ack[0] = (byte) 0x90;
                        ack[1] = (byte) (2 + filters);
                        ack[2] = body[0];
                        ack[3] = body[1];
                        for (int k = 0; k < filters; k++) {
                            ack[4 + k] = 1;
                        }
                        out.write(ack);
                        if (presence != null && presenceTopic != null) {
                            publish(out, presenceTopic, presence);
                        }
                        sendNextTask(out);
                        break;
                    }
                    case 3: { // PUBLISH from the worker
                        int qos = (header >> 1) & 3;
                        String topic = readString(body, 0);
                        int at = 2 + topic.getBytes(StandardCharsets.UTF_8).length;
                        if (qos > 0) {
                            out.write(new byte[] {0x40, 2, body[at], body[at + 1]});
                            at += 2;
                        }
                        String payload = new String(body, at, body.length - at, StandardCharsets.UTF_8);
                        if (topic.endsWith("/workers/status") && payload.contains("\"status\":\"idle\"")) {
                            done.countDown();
                            sendNextTask(out);
                        }
                        break;
                    }
                    case 12: // PINGREQ
                        out.write(new byte[] {(byte) 0xd0, 0});
                        break;
                    case 14: // DISCONNECT
                        return;
                    default: // PUBACK and the rest: nothing to answer
                        break;
                }
                out.flush();
            }
        } catch (IOException e) {
            // the warm-up is over
        }
    }

    private void sendNextTask(OutputStream out) throws IOException {
        byte[] task = tasks.poll();
        if (task != null) {
            publish(out, taskTopic, task);
        }
    }

    private void publish(OutputStream out, String topicName, byte[] payload) throws IOException {
        byte[] topic = topicName.getBytes(StandardCharsets.UTF_8);
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        body.write(topic.length >> 8);
        body.write(topic.length & 0xff);
        body.write(topic);
        body.write(packetId >> 8);
        body.write(packetId & 0xff);
        packetId++;
        body.write(payload);
        ByteArrayOutputStream packet = new ByteArrayOutputStream();
        packet.write(0x32); // PUBLISH, QoS 1
        int n = body.size();
        do {
            int b = n % 128;
            n /= 128;
            packet.write(n > 0 ? b | 0x80 : b);
        } while (n > 0);
        body.writeTo(packet);
        out.write(packet.toByteArray());
    }

    private static int remainingLength(DataInputStream in) throws IOException {
        int value = 0;
        int shift = 0;
        int b;
        do {
            b = in.readUnsignedByte();
            value |= (b & 0x7f) << shift;
            shift += 7;
        } while ((b & 0x80) != 0);
        return value;
    }

    private static String readString(byte[] b, int at) {
        int len = ((b[at] & 0xff) << 8) | (b[at + 1] & 0xff);
        return new String(b, at + 2, len, StandardCharsets.UTF_8);
    }

    private static int countFilters(byte[] body) {
        int n = 0;
        for (int at = 2; at < body.length; n++) {
            int len = ((body[at] & 0xff) << 8) | (body[at + 1] & 0xff);
            at += 2 + len + 1;
        }
        return n;
    }

    @Override
    public void close() throws IOException {
        server.close();
    }
}
