package swarmailab.worker.models;

/** A model's answer to one question. */
public record Answer(String text, String model, long elapsedMs) {}
