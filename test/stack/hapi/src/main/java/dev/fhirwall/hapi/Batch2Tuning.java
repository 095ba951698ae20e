package dev.fhirwall.hapi;

import ca.uhn.fhir.batch2.api.IJobMaintenanceService;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.stereotype.Component;

/**
 * Bulk export is a gated Batch2 job: each step starts only on a maintenance pass, which HAPI runs once a
 * minute, so a tiny export takes about three minutes. Job fast tracking does not skip those gates. A
 * shorter pass interval makes a test export finish in seconds. The interval is read when HAPI schedules
 * its jobs (on context refresh), after this bean is built.
 */
@Component
public class Batch2Tuning {
  private static final Logger LOG = LoggerFactory.getLogger(Batch2Tuning.class);

  public Batch2Tuning(
      IJobMaintenanceService maintenance,
      @Value("${fhirwall.hapi.batch2-maintenance-millis:2000}") long millis) {
    if (maintenance instanceof JobMaintenanceServiceImpl impl) {
      impl.setScheduledJobFrequencyMillis(millis);
      LOG.info("Batch2 maintenance pass every {} ms", millis);
    } else {
      LOG.warn("Batch2 maintenance service is {}, interval left as is", maintenance.getClass().getName());
    }
  }
}
