package fhirwall;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.NpmPackageValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.UnknownCodeSystemWarningValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.utilities.npm.NpmPackage;

/**
 * Validates FHIR R4 JSON resources against their meta.profile, with the given IG packages loaded.
 *
 * <p>Usage: {@code java -jar fhir-validator.jar PACKAGE.tgz... -- RESOURCE.json...}. Prints one line per
 * message, "SEVERITY file location: message", and exits 1 when any resource has an error.
 */
public final class Validate {
  public static void main(String[] args) throws Exception {
    FhirContext ctx = FhirContext.forR4();
    NpmPackageValidationSupport npm = new NpmPackageValidationSupport(ctx);
    int i = 0;
    for (; i < args.length && !args[i].equals("--"); i++) {
      // NpmPackageValidationSupport only loads from the classpath; a file is loaded the same way by hand.
      try (InputStream in = new FileInputStream(args[i])) {
        NpmPackage pkg = NpmPackage.fromPackage(in);
        for (String name : pkg.list("package")) {
          if (!name.endsWith(".json") || name.equals("package.json") || name.startsWith(".")) {
            continue;
          }
          try (InputStream r = pkg.load("package", name)) {
            IBaseResource res = ctx.newJsonParser().parseResource(r);
            String t = res.fhirType();
            if (t.equals("StructureDefinition") || t.equals("CodeSystem") || t.equals("ValueSet")) {
              npm.addResource(res);
            }
          } catch (Exception e) {
            System.err.println("skip " + args[i] + "/" + name + ": " + e.getMessage());
          }
        }
      }
    }
    // Licensed and external terminologies (CPT, NDC, ICD-10-CM, NUBC, NCPDP) are not in any package: codes
    // from them are reported as warnings ("unknown code system"), not errors. Everything else is checked.
    UnknownCodeSystemWarningValidationSupport unknown = new UnknownCodeSystemWarningValidationSupport(ctx);
    unknown.setNonExistentCodeSystemSeverity(IValidationSupport.IssueSeverity.WARNING);
    ValidationSupportChain chain = new ValidationSupportChain(
        npm,
        new DefaultProfileValidationSupport(ctx),
        new CommonCodeSystemsTerminologyService(ctx),
        new InMemoryTerminologyServerValidationSupport(ctx),
        new SnapshotGeneratingValidationSupport(ctx),
        unknown);
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    module.setAnyExtensionsAllowed(true);
    FhirValidator validator = ctx.newValidator().registerValidatorModule(module);

    boolean failed = false;
    for (i++; i < args.length; i++) {
      String body = Files.readString(Path.of(args[i]));
      ValidationResult result = validator.validateWithResult(body);
      for (SingleValidationMessage m : result.getMessages()) {
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
