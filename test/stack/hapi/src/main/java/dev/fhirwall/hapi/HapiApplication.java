package dev.fhirwall.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.context.annotation.Import;

/**
 * fhirwall test stack: HAPI FHIR JPA server (R4) on H2, served at /fhir/*.
 *
 * <p>HAPI's own Spring configs are imported as-is; {@link HapiServerConfig} adds the beans HAPI expects
 * the host application to provide (storage settings, entity manager factory, RestfulServer, ...).
 */
@SpringBootApplication(exclude = {
  // HAPI pulls Thymeleaf in for narratives; we serve no templates.
  ThymeleafAutoConfiguration.class,
  // HAPI runs its own Quartz scheduler; Boot's would be a second one.
  QuartzAutoConfiguration.class,
  // The Elasticsearch client is on the classpath (HAPI's optional backend); no cluster here.
  ElasticsearchRestClientAutoConfiguration.class,
})
@Import({
  JpaR4Config.class,
  HapiJpaConfig.class,
  ThreadPoolFactoryConfig.class,
  JpaBatch2Config.class,
  Batch2JobsConfig.class,
  SubscriptionSubmitterConfig.class,
  SubscriptionProcessorConfig.class,
  SubscriptionChannelConfig.class,
})
public class HapiApplication {
  public static void main(String[] args) {
    SpringApplication.run(HapiApplication.class, args);
  }
}
