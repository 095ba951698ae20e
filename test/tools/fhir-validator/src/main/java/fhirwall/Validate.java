package fhirwall;

import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * Validates FHIR R4 JSON resources against their meta.profile, with the given IG packages loaded: one JVM
 * per run (see {@link Serve} for the long-lived service).
 *
 * <p>Usage: {@code java -jar fhir-validator.jar PACKAGE.tgz... -- RESOURCE.json...}. Prints one line per
 * message, "SEVERITY file location: message", and exits 1 when any resource has an error.
 */
public final class Validate {
  public static void main(String[] args) throws Exception {
    int sep = Arrays.asList(args).indexOf("--");
    if (sep < 0) {
      System.err.println("usage: fhir-validator PACKAGE.tgz... -- RESOURCE.json...  |  fhir-validator serve ...");
      System.exit(2);
    }
    Chain chain = Chain.load(Arrays.asList(args).subList(0, sep));
    Suppressions suppressions = Suppressions.load();
    boolean failed = false;
    for (int i = sep + 1; i < args.length; i++) {
      String body = Files.readString(Path.of(args[i]));
      List<SingleValidationMessage> messages =
          suppressions.apply(chain.validator.validateWithResult(body).getMessages());
      for (SingleValidationMessage m : messages) {
        if (m.getSeverity() == ResultSeverityEnum.ERROR || m.getSeverity() == ResultSeverityEnum.FATAL) {
          failed = true;
        }
        System.out.println(m.getSeverity() + " " + new File(args[i]).getName() + " " + m.getLocationString()
            + ": " + m.getMessage());
      }
    }
    System.exit(failed ? 1 : 0);
  }
}
