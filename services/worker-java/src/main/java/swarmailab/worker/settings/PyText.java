package swarmailab.worker.settings;

import java.math.BigDecimal;
import java.util.Locale;

/**
 * Text as Python writes and reads it: whitespace (str.isspace), strip, repr() of strings and floats, and
 * "{:g}" — so that this worker's messages read exactly as the Python worker's.
 */
public final class PyText {
    private PyText() {}

    /** Python's str.isspace() for one code point (Java's own definitions differ on U+00A0, U+0085, U+202F...). */
    public static boolean isSpace(int cp) {
        switch (cp) {
            case ' ': case '\t': case '\n': case 0x0b: case 0x0c: case '\r':
            case 0x1c: case 0x1d: case 0x1e: case 0x1f:
            case 0x85: case 0xa0: case 0x1680:
            case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
                return true;
            default:
                return cp >= 0x2000 && cp <= 0x200a;
        }
    }

    /** Python's str.strip(). */
    public static String strip(String s) {
        int start = 0;
        int end = s.length();
        while (start < end && isSpace(s.codePointAt(start))) {
            start += Character.charCount(s.codePointAt(start));
        }
        while (end > start && isSpace(s.codePointBefore(end))) {
            end -= Character.charCount(s.codePointBefore(end));
        }
        return s.substring(start, end);
    }

    /** Python's str.rstrip(). */
    public static String rstrip(String s) {
        int end = s.length();
        while (end > 0 && isSpace(s.codePointBefore(end))) {
            end -= Character.charCount(s.codePointBefore(end));
        }
        return s.substring(0, end);
    }

    /** Python's " ".join(s.split()): runs of whitespace become one space, none at either end. */
    public static String collapseSpaces(String s) {
        StringBuilder out = new StringBuilder(s.length());
        boolean pendingSpace = false;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            if (isSpace(cp)) {
                pendingSpace = out.length() > 0;
                continue;
            }
            if (pendingSpace) {
                out.append(' ');
                pendingSpace = false;
            }
            out.appendCodePoint(cp);
        }
        return out.toString();
    }

    /** Python's repr() of a str, for the common cases (quotes, backslashes, control characters). */
    public static String repr(String s) {
        char quote = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        StringBuilder b = new StringBuilder(s.length() + 2).append(quote);
        s.codePoints().forEach(cp -> {
            if (cp == '\\') {
                b.append("\\\\");
            } else if (cp == quote) {
                b.append('\\').append(quote);
            } else if (cp == '\n') {
                b.append("\\n");
            } else if (cp == '\r') {
                b.append("\\r");
            } else if (cp == '\t') {
                b.append("\\t");
            } else if (cp < 0x20 || cp == 0x7f) {
                b.append(String.format(Locale.ROOT, "\\x%02x", cp));
            } else {
                b.appendCodePoint(cp);
            }
        });
        return b.append(quote).toString();
    }

    /** Python's "{:g}" for ordinary values: 10.0 → "10", 0.001 → "0.001", 1e6 → "1e+06". */
    public static String formatG(double v) {
        String s = String.format(Locale.ROOT, "%.6g", v);
        int e = s.indexOf('e');
        if (e >= 0) {
            return trimFraction(s.substring(0, e)) + s.substring(e);
        }
        // Java switches to scientific at 10^6 exactly as Python does, but keeps trailing zeros.
        return trimFraction(s);
    }

    private static String trimFraction(String s) {
        if (s.indexOf('.') < 0) {
            return s;
        }
        s = s.replaceAll("0+$", "");
        return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
    }

    /** Python's repr() of a float in the plain range (1e-4 ≤ |v| < 1e16): "10.0", "1733512345.123456". */
    public static String floatRepr(double v) {
        if (v != 0 && (Math.abs(v) >= 1e16 || Math.abs(v) < 1e-4)) {
            return Double.toString(v).replace("E", "e");
        }
        String plain = new BigDecimal(Double.toString(v)).toPlainString();
        return plain.indexOf('.') >= 0 ? plain : plain + ".0";
    }

    /** The number of code points (Python's len()). */
    public static int length(String s) {
        return s.codePointCount(0, s.length());
    }

    /** The first n code points (Python's s[:n]); never splits a surrogate pair. */
    public static String head(String s, int n) {
        if (length(s) <= n) {
            return s;
        }
        return s.substring(0, s.offsetByCodePoints(0, n));
    }
}
