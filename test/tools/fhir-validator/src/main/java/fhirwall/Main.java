package fhirwall;

import java.util.Arrays;

/**
 * The jar's entry point: {@code serve ...} runs the HTTP service ({@link Serve}); anything else is the
 * one-shot command line ({@link Validate}).
 */
public final class Main {
  public static void main(String[] args) throws Exception {
    if (args.length > 0 && args[0].equals("serve")) {
      Serve.main(Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    Validate.main(args);
  }
}
