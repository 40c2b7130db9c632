package dev.patchcore.cli;

import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

import java.math.BigDecimal;

/** A token count as people write one: {@code 360000000000}, {@code 3.6e11}, {@code 360B}, {@code 2.5M}, {@code 100k}. */
public final class TokenCount implements ITypeConverter<Long> {
    @Override public Long convert(String value) {
        String v = value.strip().replace("_", "");
        long scale = 1;
        if (!v.isEmpty()) {
            switch (Character.toUpperCase(v.charAt(v.length() - 1))) {
                case 'K' -> scale = 1_000L;
                case 'M' -> scale = 1_000_000L;
                case 'B', 'G' -> scale = 1_000_000_000L;
                case 'T' -> scale = 1_000_000_000_000L;
                default -> { }
            }
            if (scale > 1) v = v.substring(0, v.length() - 1);
        }
        try {
            return new BigDecimal(v).multiply(BigDecimal.valueOf(scale)).longValueExact();
        } catch (NumberFormatException | ArithmeticException e) {
            throw new TypeConversionException("'" + value + "' is not a whole number of tokens (e.g. 360000000000, 3.6e11, 360B, 2.5M)");
        }
    }
}
