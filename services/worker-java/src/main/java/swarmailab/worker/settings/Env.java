package swarmailab.worker.settings;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;
import java.util.regex.Pattern;

/** Typed reads of one environment, as services/envconfig.py's Env: every error names its variable. */
public final class Env {
    // What Python's float() accepts, lower-cased: digits with single underscores, inf, nan; no hex, no suffix.
    private static final Pattern PY_FLOAT = Pattern.compile(
        "[+-]?((\\d(_?\\d)*)?\\.?\\d(_?\\d)*([eE][+-]?\\d(_?\\d)*)?|(\\d(_?\\d)*)\\.([eE][+-]?\\d(_?\\d)*)?"
            + "|inf|infinity|nan)");
    private static final Pattern PY_INT = Pattern.compile("[+-]?\\d(_?\\d)*");
    // The original system's MQTT_BROKER: mosquitto, mosquitto:1883, mqtt://mosquitto, mqtt://mosquitto:1884
    // (services/envconfig.py's _BROKER).
    private static final Pattern BROKER = Pattern.compile("(?:(?i:mqtt)://)?([^\\s:/@\\[\\]]+)(?::([0-9]{1,5}))?");

    /** The original system's MQTT_BROKER: its host and its port (0: none). */
    public record Broker(String host, int port) {}

    private final Function<String, String> lookup;

    public Env(Function<String, String> lookup) {
        this.lookup = lookup;
    }

    /** The process's environment. */
    public static Env system() {
        return new Env(System::getenv);
    }

    /** An environment over a map (tests). */
    public static Env of(Map<String, String> map) {
        return new Env(map::get);
    }

    /** The value stripped; "" when unset. */
    public String raw(String name) {
        String v = lookup.apply(name);
        return v == null ? "" : PyText.strip(v);
    }

    /**
     * The original system's MQTT_BROKER, a host or a URL, with or without port; null when unset. It stands for
     * MQTT_HOST and MQTT_PORT when they are unset.
     */
    public Broker mqttBroker() throws BadSetting {
        String raw = raw("MQTT_BROKER");
        if (raw.isEmpty()) {
            return null;
        }
        java.util.regex.Matcher m = BROKER.matcher(raw);
        boolean matches = m.matches();
        int port = matches && m.group(2) != null ? Integer.parseInt(m.group(2)) : 0;
        if (!matches || (m.group(2) != null && (port < 1 || port > 65535))) {
            throw new BadSetting("MQTT_BROKER must be host, host:port or mqtt://host[:port], got " + PyText.repr(raw));
        }
        return new Broker(m.group(1), port);
    }

    /** A string; empty or unset means the default. */
    public String text(String name, String def) {
        String v = raw(name);
        return v.isEmpty() ? def : v;
    }

    /** A finite number, at least minimum. */
    public double number(String name, double def, double minimum) throws BadSetting {
        String raw = raw(name);
        double value = def;
        if (!raw.isEmpty()) {
            String lower = raw.toLowerCase(Locale.ROOT);
            if (!PY_FLOAT.matcher(lower).matches()) {
                throw new BadSetting(name + " must be a number, got " + PyText.repr(raw));
            }
            String digits = lower.replace("_", "");
            if (digits.endsWith("inf") || digits.endsWith("infinity")) {
                value = digits.startsWith("-") ? Double.NEGATIVE_INFINITY : Double.POSITIVE_INFINITY;
            } else if (digits.endsWith("nan")) {
                value = Double.NaN;
            } else {
                value = Double.parseDouble(digits);
            }
        }
        if (Double.isInfinite(value) || Double.isNaN(value) || value < minimum) {
            throw new BadSetting(name + " must be a finite number >= " + PyText.formatG(minimum) + ", got "
                + PyText.repr(raw));
        }
        return value;
    }

    /** A whole number within [minimum, maximum]; maximum null: none. */
    public int integer(String name, int def, int minimum, Integer maximum) throws BadSetting {
        String raw = raw(name);
        BigInteger value = BigInteger.valueOf(def);
        if (!raw.isEmpty()) {
            if (!PY_INT.matcher(raw).matches()) {
                throw new BadSetting(name + " must be a whole number, got " + PyText.repr(raw));
            }
            value = new BigInteger(raw.replace("_", ""));
        }
        boolean tooBig = maximum != null && value.compareTo(BigInteger.valueOf(maximum)) > 0;
        if (value.compareTo(BigInteger.valueOf(minimum)) < 0 || tooBig || value.bitLength() > 31) {
            String bound = maximum != null ? "between " + minimum + " and " + maximum : ">= " + minimum;
            throw new BadSetting(name + " must be " + bound + ", got " + PyText.repr(raw));
        }
        return value.intValue();
    }

    /** A boolean: 1/true/yes/on or 0/false/no/off (any case); empty means the default. */
    public boolean bool(String name, boolean def) throws BadSetting {
        String v = lookup.apply(name);
        String stripped = v == null ? "" : PyText.strip(v);
        if (stripped.isEmpty()) {
            return def;
        }
        switch (stripped.toLowerCase(Locale.ROOT)) {
            case "1": case "true": case "yes": case "on":
                return true;
            case "0": case "false": case "no": case "off":
                return false;
            default:
                throw new BadSetting(name + ": expected a boolean (true/false), got " + PyText.repr(v));
        }
    }

    /** One of options (case-insensitive); returned in lower case. */
    public String choice(String name, String def, List<String> options) throws BadSetting {
        String value = text(name, def).toLowerCase(Locale.ROOT);
        if (!options.contains(value)) {
            throw new BadSetting(name + " must be one of " + String.join(", ", options) + ", got "
                + PyText.repr(value));
        }
        return value;
    }

    /** A path that must name a regular file, or "" when unset. */
    public String existingFile(String name) throws BadSetting {
        String path = raw(name);
        if (!path.isEmpty() && !Files.isRegularFile(Path.of(path))) {
            throw new BadSetting(name + ": no such file " + path);
        }
        return path;
    }

    /** NAME, or else the stripped content of the file NAME_FILE (Docker secrets); "" when neither. */
    public String secret(String name) throws BadSetting {
        String direct = raw(name);
        if (!direct.isEmpty()) {
            return direct;
        }
        String path = raw(name + "_FILE");
        if (path.isEmpty()) {
            return "";
        }
        try {
            return PyText.strip(Files.readString(Path.of(path), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new BadSetting(name + "_FILE: cannot read " + path + " (" + Strerror.of(e) + ")");
        }
    }
}
