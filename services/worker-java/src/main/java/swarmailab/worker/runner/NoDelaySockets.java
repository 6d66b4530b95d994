package swarmailab.worker.runner;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.Socket;
import javax.net.SocketFactory;
import javax.net.ssl.SSLSocketFactory;

/**
 * Socket factories that turn Nagle's algorithm off: a status or task message is one small packet, and with
 * delayed ACKs Nagle would hold it back for up to 40 ms (the Python services do the same, mqtt_link.py).
 */
final class NoDelaySockets {
    private NoDelaySockets() {}

    private static Socket noDelay(Socket s) throws IOException {
        s.setTcpNoDelay(true);
        return s;
    }

    /** Plain TCP. */
    static SocketFactory plain() {
        return new SocketFactory() {
            @Override
            public Socket createSocket() throws IOException {
                return noDelay(new Socket());
            }

            @Override
            public Socket createSocket(String host, int port) throws IOException {
                return noDelay(new Socket(host, port));
            }

            @Override
            public Socket createSocket(String host, int port, InetAddress local, int localPort) throws IOException {
                return noDelay(new Socket(host, port, local, localPort));
            }

            @Override
            public Socket createSocket(InetAddress host, int port) throws IOException {
                return noDelay(new Socket(host, port));
            }

            @Override
            public Socket createSocket(InetAddress host, int port, InetAddress local, int localPort)
                throws IOException {
                return noDelay(new Socket(host, port, local, localPort));
            }
        };
    }

    /** TLS over a socket that Paho connects itself and hands to createSocket(Socket, ...). */
    static SSLSocketFactory tls(SSLSocketFactory d) {
        return new SSLSocketFactory() {
            @Override
            public String[] getDefaultCipherSuites() {
                return d.getDefaultCipherSuites();
            }

            @Override
            public String[] getSupportedCipherSuites() {
                return d.getSupportedCipherSuites();
            }

            @Override
            public Socket createSocket() throws IOException {
                return noDelay(d.createSocket());
            }

            @Override
            public Socket createSocket(Socket s, String host, int port, boolean autoClose) throws IOException {
                return d.createSocket(noDelay(s), host, port, autoClose);
            }

            @Override
            public Socket createSocket(Socket s, InputStream consumed, boolean autoClose) throws IOException {
                return d.createSocket(noDelay(s), consumed, autoClose);
            }

            @Override
            public Socket createSocket(String host, int port) throws IOException {
                return noDelay(d.createSocket(host, port));
            }

            @Override
            public Socket createSocket(String host, int port, InetAddress local, int localPort) throws IOException {
                return noDelay(d.createSocket(host, port, local, localPort));
            }

            @Override
            public Socket createSocket(InetAddress host, int port) throws IOException {
                return noDelay(d.createSocket(host, port));
            }

            @Override
            public Socket createSocket(InetAddress host, int port, InetAddress local, int localPort)
                throws IOException {
                return noDelay(d.createSocket(host, port, local, localPort));
            }
        };
    }
}
