package swarmailab.worker.protocol;

import com.fasterxml.jackson.core.ErrorReportConfiguration;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.cfg.JsonNodeFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;

/**
 * The worker's one Jackson mapper, set up to read JSON as Python's {@code json.loads} does (the master and the
 * Python worker read the same messages with it, then validate with pydantic) and to write compact JSON as
 * pydantic's {@code model_dump_json(exclude_none=True)} does.
 *
 * <p>Reading, decided as Python decides:
 * <ul>
 *   <li>a repeated key: the last one wins (Jackson's default for trees, and Python's);
 *   <li>anything after the value but whitespace is refused (Python: "Extra data");
 *   <li>{@code NaN}, {@code Infinity}, {@code -Infinity} are read as numbers, as Python reads them: a field that
 *       needs an integer or a string then refuses them (like pydantic), an unknown field just ignores them.
 *       Jackson also takes {@code +Infinity}, {@code +INF} and {@code -INF}, which Python refuses: only a field
 *       the worker ignores anyway could differ;
 *   <li>the rest is strict JSON in both: no comments, single quotes, unquoted names, trailing commas,
 *       leading zeros, raw control characters in strings or a byte-order mark.
 * </ul>
 */
public final class JsonCodec {
    private static final ObjectMapper MAPPER = JsonMapper.builder(JsonFactory.builder()
            .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
            // An error echoes at most two characters of a bad token: a malformed task must not put its key
            // into a log line.
            .errorReportConfiguration(ErrorReportConfiguration.builder().maxErrorTokenLength(0).build())
            .build())
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
        // Null fields are left out of what is written, as pydantic's exclude_none=True leaves them out.
        .disable(JsonNodeFeature.WRITE_NULL_PROPERTIES)
        .build();

    private JsonCodec() {}

    /**
     * The one JSON value that fills the text (whitespace around it allowed); JSON null is a NullNode.
     *
     * @throws JsonProcessingException the text is not JSON (also when it is empty)
     */
    public static JsonNode parse(String text) throws JsonProcessingException {
        // readValue, not readTree: an empty text is an error here, as in Python, not a MissingNode.
        return MAPPER.readValue(text, JsonNode.class);
    }

    /** Why a text is not JSON, in one line without the text itself ("Unexpected ... at char 7"). */
    public static String reason(JsonProcessingException e) {
        String why = e.getOriginalMessage().replaceAll("\\s+", " ");
        JsonLocation at = e.getLocation();
        return at == null || at.getCharOffset() < 0 ? why : why + " at char " + at.getCharOffset();
    }

    /** A new, empty JSON object; its fields are written in the order they are put. */
    public static ObjectNode object() {
        return MAPPER.createObjectNode();
    }

    /** A value as compact JSON text: no spaces, non-ASCII as is, only what JSON requires escaped. */
    public static String write(JsonNode value) {
        try {
            return MAPPER.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write JSON", e); // a tree of plain values always writes
        }
    }

    /** A value as compact UTF-8 JSON, e.g. an MQTT payload. */
    public static byte[] utf8(JsonNode value) {
        // Through a String: a lone surrogate (from a "\ud800" escape in a query) becomes '?' as in any Java
        // string's UTF-8, where Jackson's own UTF-8 writer would escape it, or with
        // COMBINE_UNICODE_SURROGATES_IN_UTF8 pair it with the next character.
        return write(value).getBytes(StandardCharsets.UTF_8);
    }

    /** A string as a JSON string literal, quotes included. */
    public static String quote(String s) {
        return write(MAPPER.getNodeFactory().textNode(s));
    }
}
