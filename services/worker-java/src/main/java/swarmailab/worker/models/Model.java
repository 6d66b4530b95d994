package swarmailab.worker.models;

/** Anything that answers a question. */
public interface Model {
    /**
     * Answers query, with apiKey and model when given ("" or null: the model's own).
     *
     * @throws ModelError the call failed, with a message fit for the user
     * @throws InterruptedException the worker is stopping
     */
    Answer answer(String query, String apiKey, String model) throws ModelError, InterruptedException;
}
