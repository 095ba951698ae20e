package dev.fhirwall.hapi;

import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.JpaConfig;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.ApacheProxyAddressStrategy;
import ca.uhn.fhir.rest.server.HardcodedServerAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.LoggingInterceptor;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import java.util.HashMap;
import java.util.Map;
import javax.sql.DataSource;
import org.springframework.beans.factory.annotation.Qualifier;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

@Configuration
public class HapiServerConfig {

  /** Storage behaviour tuned for tests: see STACK-NOTES section 1. */
  @Bean
  public JpaStorageSettings storageSettings() {
    JpaStorageSettings s = new JpaStorageSettings();
    // PUT Patient/member-01 must create the resource with that id.
    s.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ANY);
    // With ANY client ids, server-assigned ids must not be plain numbers (they could collide).
    s.setResourceServerIdStrategy(JpaStorageSettings.IdStrategyEnum.UUID);
    // A repeated search must see writes made in between.
    s.setReuseCachedSearchResultsForMillis(null);
    // $expunge resets data between tests.
    s.setExpungeEnabled(true);
    s.setDeleteExpungeEnabled(true);
    s.setAllowMultipleDelete(true);
    // Bulk export: run Batch2 jobs at once instead of waiting for the 1-minute maintenance pass.
    s.setEnableTaskBulkExportJobExecution(true);
    s.setJobFastTrackingEnabled(true);
    s.setEnableBulkExportJobReuse(false);
    return s;
  }

  @Bean
  public PartitionSettings partitionSettings() {
    return new PartitionSettings(); // partitioning off
  }

  @Bean
  public SubscriptionSettings subscriptionSettings() {
    return new SubscriptionSettings();
  }

  /** The subscription delivery factory needs one; we send no mail. */
  @Bean
  public IEmailSender emailSender() {
    return details -> {};
  }

  @Bean
  public IBinaryStorageSvc binaryStorageSvc() {
    return new DatabaseBinaryContentStorageSvcImpl();
  }

  @Primary
  @Bean
  public LocalContainerEntityManagerFactoryBean entityManagerFactory(
      DataSource dataSource,
      ConfigurableListableBeanFactory beanFactory,
      FhirContext fhirContext,
      JpaStorageSettings storageSettings) {
    LocalContainerEntityManagerFactoryBean emf =
        HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
    emf.setPersistenceUnitName("HAPI_PU");
    emf.setDataSource(dataSource);
    Map<String, Object> p = new HashMap<>();
    p.put("hibernate.dialect", "ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect");
    p.put("hibernate.hbm2ddl.auto", "update");
    p.put("hibernate.jdbc.batch_size", "20");
    p.put("hibernate.format_sql", "false");
    p.put("hibernate.show_sql", "false");
    p.put("hibernate.cache.use_query_cache", "false");
    p.put("hibernate.cache.use_second_level_cache", "false");
    p.put("hibernate.cache.use_structured_entries", "false");
    p.put("hibernate.cache.use_minimal_puts", "false");
    // No Lucene / Hibernate Search.
    p.put("hibernate.search.enabled", "false");
    emf.setJpaPropertyMap(p);
    return emf;
  }

  @Primary
  @Bean
  public JpaTransactionManager transactionManager(EntityManagerFactory emf) {
    return new JpaTransactionManager(emf);
  }

  @Bean
  public RestfulServer restfulServer(
      IFhirSystemDao<?, ?> systemDao,
      ResourceProviderFactory resourceProviderFactory,
      IJpaSystemProvider systemProvider,
      JpaStorageSettings storageSettings,
      ISearchParamRegistry searchParamRegistry,
      @Qualifier(JpaConfig.JPA_VALIDATION_SUPPORT_CHAIN) IValidationSupport validationSupport,
      DatabaseBackedPagingProvider pagingProvider,
      BulkDataExportProvider bulkDataExportProvider,
      @Value("${fhirwall.hapi.server-address:}") String serverAddress) {
    FhirContext ctx = systemDao.getContext();
    ctx.setNarrativeGenerator(new NullNarrativeGenerator());

    RestfulServer server = new RestfulServer(ctx);
    server.registerProviders(resourceProviderFactory.createProviders());
    server.registerProvider(systemProvider);
    server.registerProvider(bulkDataExportProvider);
    server.setServerConformanceProvider(new JpaCapabilityStatementProvider(
        server, systemDao, storageSettings, searchParamRegistry, validationSupport));
    server.setPagingProvider(pagingProvider);
    server.setDefaultResponseEncoding(EncodingEnum.JSON);

    // One line per request in the log (logger fhirwall.hapi.access): shows what the gateway forwarded.
    LoggingInterceptor access = new LoggingInterceptor();
    access.setLoggerName("fhirwall.hapi.access");
    access.setMessageFormat(
        "${requestVerb} ${requestUrl}${requestParameters} ${operationType} ${processingTimeMillis}ms");
    access.setErrorMessageFormat(
        "ERROR ${requestVerb} ${requestUrl}${requestParameters} ${processingTimeMillis}ms ${exceptionMessage}");
    access.setLogExceptions(true);
    server.registerInterceptor(access);

    // Links in responses (Bundle.link, Location, Content-Location) must name the address the client
    // used. Behind Envoy that comes from X-Forwarded-{Host,Proto,Prefix}; a fixed base can be forced.
    if (serverAddress != null && !serverAddress.isBlank()) {
      server.setServerAddressStrategy(new HardcodedServerAddressStrategy(serverAddress));
    } else {
      server.setServerAddressStrategy(ApacheProxyAddressStrategy.forHttp());
    }
    return server;
  }

  @Bean
  public ServletRegistrationBean<RestfulServer> fhirServlet(
      RestfulServer restfulServer, ConfigurableListableBeanFactory beanFactory) {
    beanFactory.autowireBean(restfulServer);
    ServletRegistrationBean<RestfulServer> reg = new ServletRegistrationBean<>(restfulServer, "/fhir/*");
    reg.setName("fhir");
    reg.setLoadOnStartup(1);
    return reg;
  }
}
