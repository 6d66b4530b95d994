package swarmailab.worker.models;

import java.util.function.Supplier;
import swarmailab.worker.settings.PyText;

/** Chooses Gemini or the offline model for each task by the mode (auto, gemini, offline) and the keys at hand. */
public final class ModelRouter implements Model {
    /** The error of gemini mode without any key. */
    public static final String NO_KEY_MESSAGE = "no Gemini API key configured";

    private final String mode;
    private final Model offline;
    private final Supplier<Model> makeGemini;
    private final String configuredKey;
    private volatile Model gemini; // made on first use

    public ModelRouter(String mode, Supplier<Model> makeGemini, Model offline, String configuredKey) {
        this.mode = mode;
        this.makeGemini = makeGemini;
        this.offline = offline;
        this.configuredKey = configuredKey == null ? "" : PyText.strip(configuredKey);
    }

    /** In every mode but offline (in auto mode a user's key brings Gemini even to a worker without a key). */
    public boolean mayUseGemini() {
        return !mode.equals("offline");
    }

    /** The model for a task bringing apiKey, and the key to give it: the task's own key wins over the worker's. */
    public Choice choose(String apiKey) {
        if (mode.equals("offline")) {
            return new Choice(offline, "");
        }
        String key = apiKey == null ? "" : PyText.strip(apiKey);
        if (key.isEmpty()) {
            key = configuredKey;
        }
        if (key.isEmpty() && mode.equals("auto")) {
            return new Choice(offline, "");
        }
        return new Choice(gemini(), key);
    }

    private synchronized Model gemini() {
        if (gemini == null) {
            gemini = makeGemini.get();
        }
        return gemini;
    }

    /** A model and the key to give it. */
    public record Choice(Model model, String key) {
        @Override
        public String toString() {
            return "Choice[" + model.getClass().getSimpleName() + "]"; // never the key
        }
    }

    @Override
    public Answer answer(String query, String apiKey, String model) throws ModelError, InterruptedException {
        Choice c = choose(apiKey);
        return c.model().answer(query, c.key(), model);
    }
}
