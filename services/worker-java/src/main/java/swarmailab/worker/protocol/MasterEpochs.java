package swarmailab.worker.protocol;

/**
 * The highest leader epoch seen on the master's presence (docs/PROTOCOL.md, Epochs): a presence with a lower one
 * comes from a deposed leader (or is its Last Will) and is ignored entirely. Not thread-safe: the caller locks.
 */
public final class MasterEpochs {
    private Long highest;

    /**
     * Whether the presence comes from a leader older than one already seen; otherwise its epoch, if it has one, is
     * the highest so far. A presence without an epoch (a single master) says nothing about leaders: never deposed.
     */
    public boolean deposed(MasterPresence presence) {
        Long epoch = presence.epoch();
        if (epoch == null) {
            return false;
        }
        if (highest != null && epoch < highest) {
            return true;
        }
        highest = epoch;
        return false;
    }

    /** The highest epoch seen, or null before any. */
    public Long highest() {
        return highest;
    }
}
