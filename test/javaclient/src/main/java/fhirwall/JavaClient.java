package fhirwall;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.api.MethodOutcome;
import ca.uhn.fhir.rest.api.RequestTypeEnum;
import ca.uhn.fhir.rest.client.api.IGenericClient;
import ca.uhn.fhir.rest.client.api.IHttpRequest;
import ca.uhn.fhir.rest.client.api.IHttpResponse;
import ca.uhn.fhir.rest.client.interceptor.BearerTokenAuthInterceptor;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import org.apache.http.impl.client.HttpClients;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.ExplanationOfBenefit;
import org.hl7.fhir.r4.model.IdType;
import org.hl7.fhir.r4.model.Parameters;
import org.hl7.fhir.r4.model.Patient;
import org.hl7.fhir.r4.model.StringType;

/**
 * Drives one fhirwall API with HAPI FHIR's generic client, the way an app built on it would, and prints what the
 * client saw as one JSON object on stdout. It decides nothing: javaclient_e2e_test.go holds the expectations.
 *
 * <pre>
 * FHIRWALL_TOKEN=... [FHIRWALL_CA=ca.pem] java -jar target/javaclient-0.1.0.jar patient-access|provider-access BASE
 * </pre>
 *
 * Each step is reported on its own ({"error": ...} when the client threw), so one refusal does not hide the rest.
 */
public final class JavaClient {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String ORG_A_GROUP = "attribution-org-a";

  private final FhirContext ctx;
  private final IGenericClient client;
  private final String token;

  private JavaClient(FhirContext ctx, IGenericClient client, String token) {
    this.ctx = ctx;
    this.client = client;
    this.token = token;
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 2 || !List.of("patient-access", "provider-access").contains(args[0])) {
      System.err.println("usage: FHIRWALL_TOKEN=... [FHIRWALL_CA=ca.pem] java -jar javaclient.jar patient-access|provider-access BASE");
      System.exit(2);
    }
    String token = System.getenv("FHIRWALL_TOKEN");
    if (token == null || token.isEmpty()) {
      System.err.println("FHIRWALL_TOKEN is not set");
      System.exit(2);
    }
    FhirContext ctx = FhirContext.forR4();
    String ca = System.getenv("FHIRWALL_CA");
    if (ca != null && !ca.isEmpty()) {
      // The factory's own Apache client trusts only the JDK's roots; the stack's CA goes in through our own.
      ctx.getRestfulClientFactory().setHttpClient(HttpClients.custom().setSSLContext(trusting(Path.of(ca))).build());
    }
    IGenericClient client = ctx.newRestfulGenericClient(args[1]);
    client.registerInterceptor(new BearerTokenAuthInterceptor(token));
    JavaClient c = new JavaClient(ctx, client, token);

    ObjectNode out = JSON.createObjectNode();
    if (args[0].equals("patient-access")) {
      out.set("search", c.step(() -> c.pageThrough(client.search().forResource(ExplanationOfBenefit.class).count(2).returnBundle(Bundle.class).execute())));
      out.set("include", c.step(() -> c.pageThrough(client.search().forResource(ExplanationOfBenefit.class).count(2)
          .include(ExplanationOfBenefit.INCLUDE_PATIENT).returnBundle(Bundle.class).execute())));
      out.set("read", c.step(c::readAndVread));
    } else {
      out.set("search", c.step(() -> c.pageThrough(client.search().forResource(Patient.class).count(2).returnBundle(Bundle.class).execute())));
      out.set("include", c.step(() -> c.pageThrough(client.search().forResource(ExplanationOfBenefit.class).count(2)
          .where(ExplanationOfBenefit.PATIENT.hasId("member-04")).include(ExplanationOfBenefit.INCLUDE_PATIENT)
          .returnBundle(Bundle.class).execute())));
      out.set("export", c.step(c::groupExport));
    }
    System.out.println(JSON.writeValueAsString(out));
  }

  /** An SSL context trusting exactly the certificates in a PEM file. */
  private static SSLContext trusting(Path pem) throws Exception {
    KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
    ks.load(null, null);
    try (InputStream in = Files.newInputStream(pem)) {
      int i = 0;
      for (Certificate cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
        ks.setCertificateEntry("ca-" + i++, cert);
      }
    }
    TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(ks);
    SSLContext ssl = SSLContext.getInstance("TLS");
    ssl.init(null, tmf.getTrustManagers(), null);
    return ssl;
  }

  private interface Step {
    ObjectNode run() throws Exception;
  }

  private ObjectNode step(Step s) {
    try {
      return s.run();
    } catch (BaseServerResponseException e) {
      ObjectNode err = JSON.createObjectNode().put("error", e.getClass().getSimpleName()).put("status", e.getStatusCode()).put("message", e.getMessage());
      if (e.getOperationOutcome() != null) {
        err.put("outcome", ctx.newJsonParser().encodeResourceToString(e.getOperationOutcome()));
      }
      return err;
    } catch (Exception e) {
      return JSON.createObjectNode().put("error", e.toString());
    }
  }

  /** Every page of a search, followed with loadPage().next() until the Bundle has no next link. */
  private ObjectNode pageThrough(Bundle first) {
    ObjectNode out = JSON.createObjectNode();
    ArrayNode pages = out.putArray("pages");
    Bundle page = first;
    while (true) {
      ObjectNode p = pages.addObject();
      ArrayNode match = p.putArray("match");
      ArrayNode include = p.putArray("include");
      for (Bundle.BundleEntryComponent e : page.getEntry()) {
        String ref = e.getResource().getIdElement().toUnqualifiedVersionless().getValue();
        if (e.getSearch().getMode() == Bundle.SearchEntryMode.INCLUDE) {
          include.add(ref);
        } else {
          match.add(ref);
        }
      }
      if (page.getLink(Bundle.LINK_NEXT) == null) {
        return out;
      }
      p.put("next", page.getLink(Bundle.LINK_NEXT).getUrl());
      if (pages.size() > 100) {
        throw new IllegalStateException("more than 100 pages: the next links loop");
      }
      page = client.loadPage().next(page).execute();
    }
  }

  /** A read of the member's first claim and its Patient, then a vread of the version the read returned. */
  private ObjectNode readAndVread() {
    Bundle b = client.search().forResource(ExplanationOfBenefit.class).count(1).returnBundle(Bundle.class).execute();
    String id = b.getEntryFirstRep().getResource().getIdElement().getIdPart();
    ExplanationOfBenefit eob = client.read().resource(ExplanationOfBenefit.class).withId(id).execute();
    String version = eob.getIdElement().getVersionIdPart();
    ExplanationOfBenefit old = client.read().resource(ExplanationOfBenefit.class).withIdAndVersion(id, version).execute();
    String patient = eob.getPatient().getReferenceElement().getIdPart();
    Patient p = client.read().resource(Patient.class).withId(patient).execute();
    ObjectNode out = JSON.createObjectNode();
    out.put("read", eob.getIdElement().toUnqualified().getValue());
    out.put("vread", old.getIdElement().toUnqualified().getValue());
    out.put("vreadSameContent", ctx.newJsonParser().encodeResourceToString(eob.setMeta(null))
        .equals(ctx.newJsonParser().encodeResourceToString(old.setMeta(null))));
    out.put("patient", p.getIdElement().toUnqualifiedVersionless().getValue());
    return out;
  }

  /**
   * Bulk Data 2.0 Group export: kick-off through the generic client's operation call (GET, Prefer: respond-async),
   * then the status URL polled and every file downloaded through the same client's HTTP layer, each NDJSON line
   * parsed by HAPI's JSON parser.
   */
  private ObjectNode groupExport() throws Exception {
    MethodOutcome kick = client.operation().onInstance(new IdType("Group", ORG_A_GROUP)).named("$export")
        .withParameter(Parameters.class, "_outputFormat", new StringType("application/fhir+ndjson"))
        .useHttpGet().withAdditionalHeader("Prefer", "respond-async").returnMethodOutcome().execute();
    ObjectNode out = JSON.createObjectNode();
    out.put("kickoffStatus", kick.getResponseStatusCode());
    String status = kick.getFirstResponseHeader("Content-Location").orElse(null);
    out.put("statusUrl", status);
    if (status == null) {
      return out;
    }

    Instant deadline = Instant.now().plus(Duration.ofSeconds(120));
    int polls = 0;
    while (true) {
      polls++;
      IHttpResponse r = get(status, "application/json");
      try {
        if (r.getStatus() == 202 && Instant.now().isBefore(deadline)) {
          Thread.sleep(retryAfterMillis(r));
          continue;
        }
        out.put("polls", polls).put("manifestStatus", r.getStatus());
        String body = new String(r.readEntity().readAllBytes(), StandardCharsets.UTF_8);
        if (r.getStatus() != 200) {
          out.put("manifestBody", body);
          return out;
        }
        JsonNode manifest = JSON.readTree(body);
        out.set("manifest", manifest);
        ArrayNode files = out.putArray("files");
        for (JsonNode f : manifest.path("output")) {
          files.add(download(f.path("type").asText(), f.path("url").asText()));
        }
        return out;
      } finally {
        r.close();
      }
    }
  }

  private ObjectNode download(String type, String url) throws Exception {
    ObjectNode f = JSON.createObjectNode().put("type", type).put("url", url);
    IHttpResponse r = get(url, "application/fhir+ndjson");
    try {
      f.put("status", r.getStatus()).put("contentType", r.getMimeType());
      String body = new String(r.readEntity().readAllBytes(), StandardCharsets.UTF_8);
      ArrayNode lines = f.putArray("lines");
      int parsed = 0;
      for (String line : body.split("\n")) {
        if (line.isBlank()) {
          continue;
        }
        lines.add(line);
        if (r.getStatus() == 200) {
          ctx.newJsonParser().parseResource(line); // throws on a line that is not a FHIR resource
          parsed++;
        }
      }
      f.put("parsed", parsed);
      return f;
    } finally {
      r.close();
    }
  }

  /**
   * A GET through the HTTP layer the generic client itself uses (the factory's IHttpClient). Interceptors belong to
   * the generic client, not to this layer, so the bearer token is added here.
   */
  private IHttpResponse get(String url, String accept) throws Exception {
    IHttpRequest req = ctx.getRestfulClientFactory().getHttpClient(new StringBuilder(url), null, null, RequestTypeEnum.GET, List.of())
        .createGetRequest(ctx, null);
    req.removeHeaders("Accept");
    req.addHeader("Accept", accept);
    req.addHeader("Authorization", "Bearer " + token);
    return req.execute();
  }

  /** Bulk Data 2.0 §Status request: Retry-After in seconds, honoured up to 2 s so the test stays quick. */
  private static long retryAfterMillis(IHttpResponse r) {
    List<String> v = r.getHeaders("Retry-After");
    try {
      return Math.min(2000, Math.max(200, Long.parseLong(v.get(0).trim()) * 1000));
    } catch (RuntimeException e) {
      return 500;
    }
  }
}
