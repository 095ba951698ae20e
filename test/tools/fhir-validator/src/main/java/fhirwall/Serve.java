package fhirwall;

import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationOptions;
import ca.uhn.fhir.validation.ValidationResult;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import org.hl7.fhir.r4.model.OperationOutcome;
import org.hl7.fhir.utilities.npm.NpmPackage;

/**
 * The validator as a long-lived HTTP service: packages are loaded and snapshots built once, then each
 * resource takes tens to hundreds of milliseconds instead of a JVM start.
 *
 * <p>Usage: {@code java -jar fhir-validator.jar serve -addr 127.0.0.1:8095 -package PAS.tgz -package
 * USCORE.tgz [-threads 2] [-warmup Bundle-....json]}.
 *
 * <ul>
 *   <li>{@code POST /validate?profile=<canonical>} with a JSON resource: 200 and the OperationOutcome, every
 *       issue (an information issue only when valid). The status never says valid or invalid; the issues'
 *       severities do. Without {@code profile} the resource's meta.profile (or its base definition) is used.
 *       400 for a body that is not a JSON object, 413 over 16 MiB, 422 for a profile this service does not
 *       hold, 503 until warmed up.
 *   <li>{@code GET /healthz}: 200 once the warm-up validation (a package example, which builds the
 *       snapshots) found no error, else 503.
 * </ul>
 *
 * <p>One log line per request (path, status, profile, issue counts, milliseconds); never the body, which
 * holds protected health information.
 */
public final class Serve {
  static final int MAX_BODY = 16 << 20;
  private static final String FHIR_JSON = "application/fhir+json";
  private static final ObjectMapper JSON = new ObjectMapper();

  private final Chain chain;
  private final Suppressions suppressions;
  private final AtomicBoolean ready = new AtomicBoolean();

  private Serve(Chain chain, Suppressions suppressions) {
    this.chain = chain;
    this.suppressions = suppressions;
  }

  public static void main(String[] args) throws Exception {
    String addr = null;
    String warmup = "Bundle-MedicalServicesAuthorizationBundleExample.json";
    int threads = 2;
    List<String> packages = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      String flag = args[i];
      if (i + 1 >= args.length) {
        usage("flag " + flag + " needs a value");
      }
      String v = args[++i];
      switch (flag) {
        case "-addr" -> addr = v;
        case "-package" -> packages.add(v);
        case "-threads" -> threads = Integer.parseInt(v);
        case "-warmup" -> warmup = v;
        default -> usage("unknown flag " + flag);
      }
    }
    if (addr == null || packages.isEmpty() || threads < 1) {
      usage("-addr and at least one -package are required");
    }
    int colon = addr.lastIndexOf(':');
    if (colon < 1) {
      usage("-addr must be host:port");
    }
    InetSocketAddress bind = new InetSocketAddress(addr.substring(0, colon), Integer.parseInt(addr.substring(colon + 1)));

    long t0 = System.nanoTime();
    Serve s = new Serve(Chain.load(packages), Suppressions.load());
    log("loaded " + packages.size() + " packages and " + s.suppressions.size() + " suppressions in " + millis(t0) + " ms");

    // Listen first, so /healthz answers 503 while warming up rather than refusing connections.
    HttpServer server = HttpServer.create(bind, 64);
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    server.setExecutor(pool);
    server.createContext("/validate", s::validate);
    server.createContext("/healthz", s::healthz);
    server.start();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      server.stop(1);
      pool.shutdownNow();
    }));
    log("listening on " + addr + " with " + threads + " threads");

    long t1 = System.nanoTime();
    String problem = s.warmUp(warmup);
    if (problem != null) {
      log("warm-up failed, exiting: " + problem);
      System.exit(1);
    }
    s.ready.set(true);
    log("warm-up validation of " + warmup + " took " + millis(t1) + " ms; healthy " + millis(t0) + " ms after start");
  }

  /**
   * Validates the named example from the loaded packages, narrative removed (the IG examples' narratives
   * have unresolvable hyperlinks: their errors, not ours). Returns null when it validated without error:
   * a chain that rejects the IG's own example is misconfigured, and must not report healthy.
   */
  private String warmUp(String name) throws IOException {
    for (NpmPackage pkg : chain.packages) {
      if (!pkg.hasFile("example", name)) {
        continue;
      }
      JsonNode example;
      try (InputStream in = pkg.load("example", name)) {
        example = JSON.readTree(in);
      }
      stripText(example);
      List<SingleValidationMessage> issues = check(JSON.writeValueAsString(example), null);
      List<String> errors = new ArrayList<>();
      for (SingleValidationMessage m : issues) {
        if (isError(m)) {
          errors.add(m.getLocationString() + ": " + m.getMessage());
        }
      }
      return errors.isEmpty() ? null : errors.size() + " errors in " + name + ": " + String.join("; ", errors);
    }
    return "no package has the example " + name;
  }

  private static void stripText(JsonNode n) {
    if (n instanceof ObjectNode o) {
      if (o.has("resourceType")) {
        o.remove("text");
      }
    }
    for (JsonNode child : n) {
      stripText(child);
    }
  }

  private List<SingleValidationMessage> check(String body, String profile) {
    ValidationOptions opts = new ValidationOptions();
    if (profile != null) {
      opts.addProfile(profile);
    }
    return suppressions.apply(chain.validator.validateWithResult(body, opts).getMessages());
  }

  private void healthz(HttpExchange x) throws IOException {
    try (x) {
      if (!x.getRequestURI().getPath().equals("/healthz")) {
        send(x, 404, "text/plain", "not found\n");
        return;
      }
      if (ready.get()) {
        send(x, 200, "text/plain", "ok\n");
      } else {
        send(x, 503, "text/plain", "warming up\n");
      }
    }
  }

  private void validate(HttpExchange x) throws IOException {
    long t0 = System.nanoTime();
    String profile = null;
    int status = 500;
    int issues = 0;
    int errors = 0;
    String method = x.getRequestMethod();
    try (x) {
      if (!x.getRequestURI().getPath().equals("/validate")) {
        status = send(x, 404, "text/plain", "not found\n");
        return;
      }
      if (!x.getRequestMethod().equals("POST")) {
        x.getResponseHeaders().set("Allow", "POST");
        status = send(x, 405, "text/plain", "POST a JSON resource\n");
        return;
      }
      profile = queryParam(x.getRequestURI().getRawQuery(), "profile");
      if (!ready.get()) {
        status = refuse(x, 503, OperationOutcome.IssueType.TRANSIENT, "validator warming up");
        return;
      }
      // HAPI reports a profile it cannot resolve as a mere warning: the resource would pass unchecked. The
      // caller named a profile this service does not hold, a configuration error, not a verdict on the body.
      if (profile != null && chain.support.fetchStructureDefinition(profile) == null) {
        status = refuse(x, 422, OperationOutcome.IssueType.NOTSUPPORTED, "profile not loaded: " + profile);
        return;
      }
      String length = x.getRequestHeaders().getFirst("Content-Length");
      if (length != null && parseLong(length) > MAX_BODY) {
        status = refuse(x, 413, OperationOutcome.IssueType.TOOLONG, "resource over " + MAX_BODY + " bytes");
        return;
      }
      byte[] body = x.getRequestBody().readNBytes(MAX_BODY + 1);
      if (body.length > MAX_BODY) {
        status = refuse(x, 413, OperationOutcome.IssueType.TOOLONG, "resource over " + MAX_BODY + " bytes");
        return;
      }
      String text = new String(body, StandardCharsets.UTF_8);
      JsonNode parsed;
      try {
        parsed = JSON.readTree(text);
      } catch (IOException e) {
        parsed = null;
      }
      if (parsed == null || !parsed.isObject()) {
        status = refuse(x, 400, OperationOutcome.IssueType.STRUCTURE, "the body is not a JSON object");
        return;
      }
      List<SingleValidationMessage> messages = check(text, profile);
      issues = messages.size();
      for (SingleValidationMessage m : messages) {
        if (isError(m)) {
          errors++;
        }
      }
      ValidationResult result = new ValidationResult(chain.ctx, messages);
      String outcome = chain.ctx.newJsonParser().encodeResourceToString(result.toOperationOutcome());
      status = send(x, 200, FHIR_JSON, outcome);
    } catch (RuntimeException e) {
      // The body stays out of the log; the exception's class and message say what broke.
      log("validation failed: " + e);
      status = refuse(x, 500, OperationOutcome.IssueType.EXCEPTION, "validator failure");
    } finally {
      log(method + " /validate status=" + status + " profile=" + (profile == null ? "-" : profile) + " issues=" + issues
          + " errors=" + errors + " ms=" + millis(t0));
    }
  }

  private static boolean isError(SingleValidationMessage m) {
    return m.getSeverity() == ResultSeverityEnum.ERROR || m.getSeverity() == ResultSeverityEnum.FATAL;
  }

  private int refuse(HttpExchange x, int status, OperationOutcome.IssueType type, String why) {
    OperationOutcome oo = new OperationOutcome();
    oo.addIssue().setSeverity(OperationOutcome.IssueSeverity.ERROR).setCode(type).setDiagnostics(why);
    try {
      return send(x, status, FHIR_JSON, chain.ctx.newJsonParser().encodeResourceToString(oo));
    } catch (IOException e) {
      return status; // the client went away
    }
  }

  private static int send(HttpExchange x, int status, String type, String body) throws IOException {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    x.getResponseHeaders().set("Content-Type", type);
    x.sendResponseHeaders(status, b.length);
    try (OutputStream out = x.getResponseBody()) {
      out.write(b);
    }
    return status;
  }

  static String queryParam(String rawQuery, String name) {
    if (rawQuery == null) {
      return null;
    }
    for (String pair : rawQuery.split("&")) {
      int eq = pair.indexOf('=');
      String k = URLDecoder.decode(eq < 0 ? pair : pair.substring(0, eq), StandardCharsets.UTF_8);
      if (k.equals(name) && eq >= 0) {
        String v = URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
        return v.isEmpty() ? null : v;
      }
    }
    return null;
  }

  private static long parseLong(String s) {
    try {
      return Long.parseLong(s.trim());
    } catch (NumberFormatException e) {
      return -1;
    }
  }

  private static long millis(long since) {
    return (System.nanoTime() - since) / 1_000_000;
  }

  private static void log(String line) {
    System.out.println(Instant.now() + " " + line);
  }

  private static void usage(String why) {
    System.err.println("fhir-validator serve: " + why);
    System.err.println("usage: fhir-validator serve -addr HOST:PORT -package FILE.tgz... [-threads N] [-warmup EXAMPLE.json]");
    System.exit(2);
  }
}
