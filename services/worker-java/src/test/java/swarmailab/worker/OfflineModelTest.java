package swarmailab.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import swarmailab.worker.models.OfflineModel;
import swarmailab.worker.protocol.JsonCodec;

/**
 * Byte for byte Python's OfflineModel.text_for, on the Go worker's vectors (Python's own answers: whitespace,
 * long text, an emoji at the 200-character cut); one file shared by both workers.
 */
class OfflineModelTest {
    static final Path VECTORS = Path.of("../worker-go/internal/models/testdata/offline_vectors.jsonl");

    @Test
    void pythonVectors() throws Exception {
        List<String> lines = Files.readAllLines(VECTORS, StandardCharsets.UTF_8);
        int checked = 0;
        for (String line : lines) {
            if (line.isBlank()) {
                continue;
            }
            JsonNode pair = JsonCodec.parse(line);
            String query = pair.get(0).textValue();
            String want = pair.get(1).textValue();
            assertEquals(want, OfflineModel.textFor(query), "query " + query);
            checked++;
        }
        assertTrue(checked >= 10, "only " + checked + " vectors");
    }

    @Test
    void latency() throws Exception {
        assertEquals(0, new OfflineModel(0, 0).sampleLatencyMs());
        assertEquals(5, new OfflineModel(5, 0).sampleLatencyMs());
        OfflineModel lognormal = new OfflineModel(100, 50);
        double sum = 0;
        for (int k = 0; k < 4000; k++) {
            double v = lognormal.sampleLatencyMs();
            assertTrue(v > 0);
            sum += v;
        }
        assertEquals(100, sum / 4000, 8);
        long start = System.nanoTime();
        new OfflineModel(30, 0).answer("q", "", "");
        assertTrue(System.nanoTime() - start >= 30_000_000L);
    }
}
