package swarmailab.worker.protocol;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * Reads typed fields of one JSON object the way pydantic validates them: strict strings and integers, unknown
 * fields ignored. The messages are pydantic models with {@code StrictInt} fields on the Python side.
 */
final class FieldReader {
    private final String kind;
    private final JsonNode fields;

    private FieldReader(String kind, JsonNode fields) {
        this.kind = kind;
        this.fields = fields;
    }

    /** The payload as a JSON object, or why it is not one. */
    static FieldReader of(String kind, byte[] payload) throws DecodeException {
        // Decoded here, strictly, rather than by Jackson from the bytes: Jackson would also take UTF-16/32 and
        // skip a byte-order mark, Python's bytes.decode("utf-8") does neither.
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .decode(ByteBuffer.wrap(payload)).toString();
        } catch (CharacterCodingException e) {
            throw new DecodeException(kind, "not UTF-8 JSON");
        }
        JsonNode value;
        try {
            value = JsonCodec.parse(text);
        } catch (JsonProcessingException e) {
            throw new DecodeException(kind, "not UTF-8 JSON (" + JsonCodec.reason(e) + ")");
        }
        if (!value.isObject()) {
            throw new DecodeException(kind, "expected a JSON object, got " + jsonType(value));
        }
        return new FieldReader(kind, value);
    }

    /** The JSON name of a value's type, as the Python side names it in the same message. */
    private static String jsonType(JsonNode v) {
        switch (v.getNodeType()) {
            case NULL: return "null";
            case BOOLEAN: return "boolean";
            case NUMBER: return "number";
            case STRING: return "string";
            case ARRAY: return "array";
            default: return "object";
        }
    }

    private DecodeException fail(String name, String why) {
        return new DecodeException(kind, name + ": " + why);
    }

    /** The field's value; null when absent or JSON null. */
    private JsonNode raw(String name) {
        JsonNode v = fields.get(name);
        return v == null || v.isNull() ? null : v;
    }

    /** Whether the field is the JSON boolean false (absent, null, true or another type: not). */
    boolean isFalse(String name) {
        JsonNode v = raw(name);
        return v != null && v.isBoolean() && !v.booleanValue();
    }

    /** A string field; null when absent or null (an error when required). */
    String string(String name, boolean required) throws DecodeException {
        JsonNode v = raw(name);
        if (v == null) {
            if (required) {
                throw fail(name, "Field required");
            }
            return null;
        }
        if (!v.isTextual()) {
            throw fail(name, "Input should be a valid string");
        }
        return v.textValue();
    }

    /**
     * A strict integer field, at least min when given: a number written without fraction or exponent (3.0, 3e0,
     * NaN, strings and booleans refused, as StrictInt refuses them) that fits a long.
     */
    Long integer(String name, boolean required, Long min) throws DecodeException {
        JsonNode v = raw(name);
        if (v == null) {
            if (required) {
                throw fail(name, "Field required");
            }
            return null;
        }
        // Jackson reads 3.0 and 3e0 as doubles (canConvertToLong would take them): isIntegralNumber tells them
        // apart; a bigger whole number than a long is a BigIntegerNode, refused as before.
        if (!v.isIntegralNumber() || !v.canConvertToLong()) {
            throw fail(name, "Input should be a valid integer");
        }
        long value = v.longValue();
        if (min != null && value < min) {
            throw fail(name, "Input should be greater than or equal to " + min);
        }
        return value;
    }
}
