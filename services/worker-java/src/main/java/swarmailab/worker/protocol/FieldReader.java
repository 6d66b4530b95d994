package swarmailab.worker.protocol;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/** Reads typed fields of one JSON object the way pydantic validates them (strict strings and integers). */
final class FieldReader {
    private final String kind;
    private final Map<String, Object> fields;

    private FieldReader(String kind, Map<String, Object> fields) {
        this.kind = kind;
        this.fields = fields;
    }

    /** The payload as a JSON object, or why it is not one. */
    @SuppressWarnings("unchecked")
    static FieldReader of(String kind, byte[] payload) throws DecodeException {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .decode(ByteBuffer.wrap(payload)).toString();
        } catch (CharacterCodingException e) {
            throw new DecodeException(kind, "not UTF-8 JSON");
        }
        Object value;
        try {
            value = Json.parse(text);
        } catch (Json.SyntaxError e) {
            throw new DecodeException(kind, "not UTF-8 JSON (" + e.getMessage() + ")");
        }
        if (!(value instanceof Map)) {
            throw new DecodeException(kind, "expected a JSON object, got " + jsonType(value));
        }
        return new FieldReader(kind, (Map<String, Object>) value);
    }

    private static String jsonType(Object v) {
        if (v == Json.NULL) {
            return "null";
        }
        if (v instanceof Boolean) {
            return "boolean";
        }
        if (v instanceof Json.Num) {
            return "number";
        }
        if (v instanceof String) {
            return "string";
        }
        return v instanceof List ? "array" : "object";
    }

    private DecodeException fail(String name, String why) {
        return new DecodeException(kind, name + ": " + why);
    }

    private Object raw(String name) {
        Object v = fields.get(name);
        return v == Json.NULL ? null : v;
    }

    /** A string field; null when absent or null (an error when required). */
    String string(String name, boolean required) throws DecodeException {
        Object v = raw(name);
        if (v == null) {
            if (required) {
                throw fail(name, "Field required");
            }
            return null;
        }
        if (!(v instanceof String)) {
            throw fail(name, "Input should be a valid string");
        }
        return (String) v;
    }

    /** A strict integer field (no strings, booleans or fractions, 3.0 included), at least min when given. */
    Long integer(String name, boolean required, Long min) throws DecodeException {
        Object v = raw(name);
        if (v == null) {
            if (required) {
                throw fail(name, "Field required");
            }
            return null;
        }
        if (!(v instanceof Json.Num) || !((Json.Num) v).isInteger()) {
            throw fail(name, "Input should be a valid integer");
        }
        long value;
        try {
            value = Long.parseLong(((Json.Num) v).text());
        } catch (NumberFormatException e) {
            throw fail(name, "Input should be a valid integer");
        }
        if (min != null && value < min) {
            throw fail(name, "Input should be greater than or equal to " + min);
        }
        return value;
    }
}
