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
import org.hl7.fhir.r4.model.StructureDefinition;
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
  /**
   * Definitions the jar ships in place of packages that are not available offline (resources under
   * {@code fhirwall/standins/}). Each stands in for exactly one canonical, which its description names.
   *
   * <ul>
   *   <li>{@code http://hl7.org/fhir/5.0/StructureDefinition/extension-Claim.encounter}, from the cross-version
   *       package hl7.fhir.uv.xver-r5.r4 (not available offline): Da Vinci PAS 2.0.1 profile-claim slices
   *       Claim.extension on it, and without it the validator cannot evaluate that slicing for any Claim
   *       extension, so a ClaimResponse.request pointing at a Claim with, say, levelOfServiceCode matches no
   *       profile. It carries R5 Claim.encounter (0..* Reference(Encounter)) as an R4 extension on Claim.
   * </ul>
   */
  static final List<String> STANDINS = List.of("standins/StructureDefinition-extension-Claim.encounter.json");

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
    // After the packages, so a package that does define a stand-in's canonical is not shadowed by it.
    for (String name : STANDINS) {
      try (InputStream r = Chain.class.getResourceAsStream(name)) {
        if (r == null) {
          throw new IOException("resource fhirwall/" + name + " missing from the jar");
        }
        if (!(ctx.newJsonParser().parseResource(r) instanceof StructureDefinition sd)) {
          throw new IOException("resource fhirwall/" + name + " is not a StructureDefinition");
        }
        if (npm.fetchStructureDefinition(sd.getUrl()) == null) {
          npm.addResource(sd);
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
