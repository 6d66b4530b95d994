package swarmailab.worker.protocol;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small strict JSON reader and writer for the MQTT messages: objects become LinkedHashMap, arrays List,
 * numbers {@link Num} (their text, so that 3 and 3.0 stay apart, as pydantic's StrictInt tells them), strings,
 * booleans and {@link #NULL}. Written by hand because the messages are tiny and a JSON library costs start-up.
 */
public final class Json {
    /** JSON null. */
    public static final Object NULL = new Object() {
        @Override
        public String toString() {
            return "null";
        }
    };

    /** A JSON number, kept as written. */
    public record Num(String text) {
        /** Whether it is written as a whole number (no fraction, no exponent). */
        public boolean isInteger() {
            return text.matches("-?[0-9]+");
        }
    }

    /** The text is not JSON. */
    public static final class SyntaxError extends Exception {
        private static final long serialVersionUID = 1L;

        SyntaxError(String message) {
            super(message, null, false, false);
        }
    }

    private final String s;
    private int i;

    private Json(String s) {
        this.s = s;
    }

    /** Parses one JSON value that fills the whole text (whitespace around it allowed). */
    public static Object parse(String text) throws SyntaxError {
        Json p = new Json(text);
        p.space();
        Object v = p.value(0);
        p.space();
        if (p.i != text.length()) {
            throw p.error("extra data");
        }
        return v;
    }

    private SyntaxError error(String what) {
        return new SyntaxError(what + " at char " + i);
    }

    private void space() {
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return;
            }
            i++;
        }
    }

    private Object value(int depth) throws SyntaxError {
        if (depth > 200) {
            throw error("too deeply nested");
        }
        if (i >= s.length()) {
            throw error("Expecting value");
        }
        char c = s.charAt(i);
        switch (c) {
            case '{':
                return object(depth);
            case '[':
                return array(depth);
            case '"':
                return string();
            case 't':
                return literal("true", Boolean.TRUE);
            case 'f':
                return literal("false", Boolean.FALSE);
            case 'n':
                return literal("null", NULL);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return number();
                }
                throw error("Expecting value");
        }
    }

    private Object literal(String word, Object v) throws SyntaxError {
        if (!s.startsWith(word, i)) {
            throw error("Expecting value");
        }
        i += word.length();
        return v;
    }

    private Map<String, Object> object(int depth) throws SyntaxError {
        Map<String, Object> m = new LinkedHashMap<>();
        i++;
        space();
        if (i < s.length() && s.charAt(i) == '}') {
            i++;
            return m;
        }
        while (true) {
            space();
            if (i >= s.length() || s.charAt(i) != '"') {
                throw error("Expecting property name enclosed in double quotes");
            }
            String key = string();
            space();
            expect(':');
            space();
            m.put(key, value(depth + 1)); // a repeated key: the last wins, as in Python
            space();
            if (i < s.length() && s.charAt(i) == ',') {
                i++;
                continue;
            }
            expect('}');
            return m;
        }
    }

    private List<Object> array(int depth) throws SyntaxError {
        List<Object> list = new ArrayList<>();
        i++;
        space();
        if (i < s.length() && s.charAt(i) == ']') {
            i++;
            return list;
        }
        while (true) {
            space();
            list.add(value(depth + 1));
            space();
            if (i < s.length() && s.charAt(i) == ',') {
                i++;
                continue;
            }
            expect(']');
            return list;
        }
    }

    private void expect(char c) throws SyntaxError {
        if (i >= s.length() || s.charAt(i) != c) {
            throw error("Expecting '" + c + "'");
        }
        i++;
    }

    private Num number() throws SyntaxError {
        int start = i;
        if (s.charAt(i) == '-') {
            i++;
        }
        if (i < s.length() && s.charAt(i) == '0') {
            i++;
        } else if (!digits()) {
            throw error("Expecting value");
        }
        if (i < s.length() && s.charAt(i) == '.') {
            i++;
            if (!digits()) {
                throw error("Expecting digits");
            }
        }
        if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            i++;
            if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                i++;
            }
            if (!digits()) {
                throw error("Expecting digits");
            }
        }
        return new Num(s.substring(start, i));
    }

    private boolean digits() {
        int start = i;
        while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
            i++;
        }
        return i > start;
    }

    private String string() throws SyntaxError {
        i++;
        StringBuilder b = new StringBuilder();
        while (true) {
            if (i >= s.length()) {
                throw error("Unterminated string");
            }
            char c = s.charAt(i++);
            if (c == '"') {
                return b.toString();
            }
            if (c < 0x20) {
                throw error("Invalid control character");
            }
            if (c != '\\') {
                b.append(c);
                continue;
            }
            if (i >= s.length()) {
                throw error("Unterminated string");
            }
            char e = s.charAt(i++);
            switch (e) {
                case '"': b.append('"'); break;
                case '\\': b.append('\\'); break;
                case '/': b.append('/'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u':
                    if (i + 4 > s.length()) {
                        throw error("Invalid \\uXXXX escape");
                    }
                    try {
                        b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                    } catch (NumberFormatException x) {
                        throw error("Invalid \\uXXXX escape");
                    }
                    i += 4;
                    break;
                default:
                    throw error("Invalid \\escape");
            }
        }
    }

    // -- writing ---------------------------------------------------------------------------------------

    /** Appends s as a JSON string, escaping only what JSON requires (non-ASCII stays as is, as pydantic does). */
    public static StringBuilder quote(StringBuilder b, String s) {
        b.append('"');
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                case '\b': b.append("\\b"); break;
                case '\f': b.append("\\f"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"');
    }

    /** A builder of one flat JSON object, keys in the order written; null values are left out. */
    public static final class ObjectWriter {
        private final StringBuilder b = new StringBuilder("{");

        private ObjectWriter key(String k) {
            if (b.length() > 1) {
                b.append(',');
            }
            quote(b, k).append(':');
            return this;
        }

        public ObjectWriter put(String k, String v) {
            if (v != null) {
                quote(key(k).b, v);
            }
            return this;
        }

        public ObjectWriter put(String k, Long v) {
            if (v != null) {
                key(k).b.append(v.longValue());
            }
            return this;
        }

        public ObjectWriter put(String k, Boolean v) {
            if (v != null) {
                key(k).b.append(v.booleanValue());
            }
            return this;
        }

        @Override
        public String toString() {
            return b + "}";
        }

        public byte[] bytes() {
            return toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
        }
    }
}
