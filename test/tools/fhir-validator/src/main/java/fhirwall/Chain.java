package fhirwall;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
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
 * The validator both modes use: HAPI's instance validator over the given IG packages (.tgz files), with the
 * house policy on what cannot be checked offline. Build it once; {@link FhirValidator} is safe to share
 * between threads.
 */
final class Chain {
  final FhirContext ctx;
  final FhirValidator validator;
  /** What the validator resolves profiles from: a profile it cannot fetch is not loaded. */
  final IValidationSupport support;
  /** The packages as loaded, for their examples (the server's warm-up). */
  final List<NpmPackage> packages;

  private Chain(FhirContext ctx, FhirValidator validator, IValidationSupport support, List<NpmPackage> packages) {
    this.ctx = ctx;
    this.validator = validator;
    this.support = support;
    this.packages = packages;
  }

  static Chain load(List<String> packageFiles) throws IOException {
    FhirContext ctx = FhirContext.forR4();
    NpmPackageValidationSupport npm = new NpmPackageValidationSupport(ctx);
    List<NpmPackage> loaded = new ArrayList<>();
    for (String file : packageFiles) {
      // NpmPackageValidationSupport only loads from the classpath; a file is loaded the same way by hand.
      NpmPackage pkg;
      try (InputStream in = new FileInputStream(file)) {
        pkg = NpmPackage.fromPackage(in);
      }
      loaded.add(pkg);
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
          System.err.println("skip " + file + "/" + name + ": " + e.getMessage());
        }
      }
    }
    // Licensed and external terminologies (CPT, HCPCS, NDC, ICD-10-CM, NUBC, NCPDP, the X12 code lists) are
    // not in any package: codes from them are reported as warnings ("unknown code system"), not errors.
    // Everything else is checked.
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
    return new Chain(ctx, ctx.newValidator().registerValidatorModule(module), chain, loaded);
  }
}
