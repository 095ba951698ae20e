package fhirwall;

import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * Errors the validator reports for what cannot be checked offline, downgraded to warnings. The list is data
 * (resource {@code fhirwall/suppressions.txt}): one Java regular expression per line that must match a
 * message whole, each preceded by a {@code #} comment saying why. Blank lines are ignored. A downgraded
 * message says so, naming its line, so nobody mistakes it for the validator's own verdict.
 */
final class Suppressions {
  private record Rule(Pattern pattern, int line) {}

  private final List<Rule> rules;

  private Suppressions(List<Rule> rules) {
    this.rules = rules;
  }

  static Suppressions load() throws IOException {
    try (InputStream in = Suppressions.class.getResourceAsStream("suppressions.txt")) {
      if (in == null) {
        throw new IOException("resource fhirwall/suppressions.txt missing from the jar");
      }
      return parse(in);
    }
  }

  static Suppressions parse(InputStream in) throws IOException {
    List<Rule> rules = new ArrayList<>();
    BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
    boolean explained = false;
    int n = 0;
    for (String line; (line = r.readLine()) != null; ) {
      n++;
      if (line.isBlank()) {
        explained = false;
        continue;
      }
      if (line.startsWith("#")) {
        explained = true;
        continue;
      }
      if (!explained) {
        throw new IOException("suppressions.txt line " + n + ": a pattern without a comment saying why");
      }
      rules.add(new Rule(Pattern.compile(line), n));
    }
    return new Suppressions(rules);
  }

  int size() {
    return rules.size();
  }

  /** Applies the list: an ERROR or FATAL message matched by a rule comes back as a WARNING. */
  List<SingleValidationMessage> apply(List<SingleValidationMessage> in) {
    List<SingleValidationMessage> out = new ArrayList<>(in.size());
    for (SingleValidationMessage m : in) {
      Rule rule = match(m);
      if (rule == null) {
        out.add(m);
        continue;
      }
      SingleValidationMessage w = new SingleValidationMessage(m);
      w.setSeverity(ResultSeverityEnum.WARNING);
      w.setMessage(m.getMessage() + " (fhirwall validator: error downgraded to warning, suppressions.txt line "
          + rule.line() + ")");
      out.add(w);
    }
    return out;
  }

  private Rule match(SingleValidationMessage m) {
    if (m.getSeverity() != ResultSeverityEnum.ERROR && m.getSeverity() != ResultSeverityEnum.FATAL) {
      return null;
    }
    String text = m.getMessage() == null ? "" : m.getMessage();
    for (Rule r : rules) {
      if (r.pattern().matcher(text).matches()) {
        return r;
      }
    }
    return null;
  }
}
