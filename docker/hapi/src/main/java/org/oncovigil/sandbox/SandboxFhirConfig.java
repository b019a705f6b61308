package org.oncovigil.sandbox;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.IDaoRegistry;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HibernatePropertiesProvider;
import ca.uhn.fhir.jpa.config.JpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.config.util.ResourceCountCacheUtil;
import ca.uhn.fhir.jpa.dao.FulltextSearchSvcImpl;
import ca.uhn.fhir.jpa.dao.IFulltextSearchSvc;
import ca.uhn.fhir.jpa.dao.search.HSearchSortHelperImpl;
import ca.uhn.fhir.jpa.dao.search.IHSearchSortHelper;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.provider.DaoRegistryResourceSupportedSvc;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.search.IStaleSearchDeletingSvc;
import ca.uhn.fhir.jpa.search.StaleSearchDeletingSvcImpl;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.jpa.util.ResourceCountCache;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.api.IResourceSupportedSvc;
import ca.uhn.fhir.rest.server.IncomingRequestAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import org.hibernate.dialect.Dialect;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Qualifier;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.context.properties.bind.Bindable;
import org.springframework.boot.context.properties.bind.Binder;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Lazy;
import org.springframework.context.annotation.Primary;
import org.springframework.core.env.Environment;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

import java.util.Collections;
import java.util.Map;
import javax.sql.DataSource;

/**
 * Spring wiring of the HAPI FHIR JPA R4 server for the OncoVigil sandbox.
 *
 * <p>HAPI's own configuration classes (imported below) provide the FhirContext, the DAOs, the
 * resource providers, batch2 and the subscription machinery. This class supplies the beans those
 * classes expect the hosting application to define: storage/partition/subscription settings, the
 * JPA entity manager and transaction manager, the search and paging services, binary storage, and
 * the {@link RestfulServer} servlet mounted at {@code /fhir/*}.
 */
@Configuration
@Import({
    JpaR4Config.class,
    SubscriptionSubmitterConfig.class,
    SubscriptionProcessorConfig.class,
    SubscriptionChannelConfig.class,
    JpaBatch2Config.class,
    Batch2JobsConfig.class,
    ThreadPoolFactoryConfig.class
})
public class SandboxFhirConfig {

    private static final Logger LOG = LoggerFactory.getLogger(SandboxFhirConfig.class);

    static final String DEFAULT_DIALECT = "ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect";

    // ------------------------------------------------------------------ settings

    /** Storage settings tuned for tests: no search-result reuse, expunge and multi-delete allowed. */
    @Bean
    public JpaStorageSettings jpaStorageSettings(
            @Value("${oncovigil.sandbox.max-page-size:500}") int maxPageSize) {
        JpaStorageSettings settings = new JpaStorageSettings();
        // A search issued right after a write must see that write.
        settings.setReuseCachedSearchResultsForMillis(null);
        // Allow tests to wipe the database ($expunge, conditional delete of many resources).
        settings.setExpungeEnabled(true);
        settings.setDeleteExpungeEnabled(true);
        settings.setAllowMultipleDelete(true);
        // Client-assigned ids must contain at least one non-digit (PUT Patient/p-1 works, Patient/123 -> 400).
        settings.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ALPHANUMERIC);
        settings.setFetchSizeDefaultMaximum(maxPageSize);
        settings.setAutoCreatePlaceholderReferenceTargets(false);
        return settings;
    }

    /** Partitioning stays off. */
    @Bean
    public PartitionSettings partitionSettings() {
        return new PartitionSettings();
    }

    @Bean
    public SubscriptionSettings subscriptionSettings(
            @Value("${oncovigil.sandbox.resthook-enabled:true}") boolean restHookEnabled) {
        SubscriptionSettings settings = new SubscriptionSettings();
        if (restHookEnabled) {
            settings.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
        }
        return settings;
    }

    /** Email subscriptions are not supported: mails are logged and dropped. */
    @Bean
    public IEmailSender emailSender() {
        return details -> LOG.debug("Dropping subscription email (email delivery is disabled in the sandbox)");
    }

    // ------------------------------------------------------------------ JPA

    @Bean
    @Primary
    public LocalContainerEntityManagerFactoryBean entityManagerFactory(
            DataSource dataSource,
            ConfigurableListableBeanFactory beanFactory,
            FhirContext fhirContext,
            JpaStorageSettings storageSettings,
            Environment environment) {
        LocalContainerEntityManagerFactoryBean factory =
                HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
        factory.setPersistenceUnitName("HAPI_PU");
        factory.setDataSource(dataSource);

        // HAPI pre-populates sensible Hibernate defaults; spring.jpa.properties.* override them.
        Map<String, Object> jpaProperties = factory.getJpaPropertyMap();
        jpaProperties.putAll(Binder.get(environment)
                .bind("spring.jpa.properties", Bindable.mapOf(String.class, String.class))
                .orElse(Collections.emptyMap()));
        jpaProperties.putIfAbsent("hibernate.dialect", DEFAULT_DIALECT);
        jpaProperties.putIfAbsent("hibernate.hbm2ddl.auto", "update");
        jpaProperties.putIfAbsent("hibernate.search.enabled", "false");
        jpaProperties.putIfAbsent("hibernate.format_sql", "false");
        jpaProperties.putIfAbsent("hibernate.show_sql", "false");
        jpaProperties.putIfAbsent("hibernate.jdbc.batch_size", "20");
        jpaProperties.putIfAbsent("hibernate.cache.use_query_cache", "false");
        jpaProperties.putIfAbsent("hibernate.cache.use_second_level_cache", "false");
        jpaProperties.putIfAbsent(
                "hibernate.archive.scanner", "org.hibernate.boot.archive.scan.internal.DisabledScanner");
        return factory;
    }

    @Bean
    @Primary
    public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
        JpaTransactionManager transactionManager = new JpaTransactionManager();
        transactionManager.setEntityManagerFactory(entityManagerFactory);
        return transactionManager;
    }

    @Bean
    @Primary
    public HibernatePropertiesProvider sandboxHibernatePropertiesProvider(
            LocalContainerEntityManagerFactoryBean entityManagerFactory) {
        return new SandboxHibernatePropertiesProvider(entityManagerFactory);
    }

    // ------------------------------------------------------------------ search and paging

    @Bean
    public IFulltextSearchSvc fullTextSearchSvc() {
        return new FulltextSearchSvcImpl();
    }

    @Bean
    public IHSearchSortHelper hSearchSortHelper(ISearchParamRegistry searchParamRegistry) {
        return new HSearchSortHelperImpl(searchParamRegistry);
    }

    @Bean
    public IStaleSearchDeletingSvc staleSearchDeletingSvc() {
        return new StaleSearchDeletingSvcImpl();
    }

    @Bean
    public DatabaseBackedPagingProvider databaseBackedPagingProvider(
            @Value("${oncovigil.sandbox.default-page-size:20}") int defaultPageSize,
            @Value("${oncovigil.sandbox.max-page-size:500}") int maxPageSize) {
        DatabaseBackedPagingProvider pagingProvider = new DatabaseBackedPagingProvider();
        pagingProvider.setDefaultPageSize(defaultPageSize);
        pagingProvider.setMaximumPageSize(maxPageSize);
        return pagingProvider;
    }

    @Bean
    public IResourceSupportedSvc resourceSupportedSvc(IDaoRegistry daoRegistry) {
        return new DaoRegistryResourceSupportedSvc(daoRegistry);
    }

    /** HAPI looks this cache up by name. */
    @Bean(name = "myResourceCountsCache")
    public ResourceCountCache resourceCountsCache(IFhirSystemDao<?, ?> systemDao) {
        return ResourceCountCacheUtil.newResourceCountCache(systemDao);
    }

    @Bean
    @Lazy
    public IBinaryStorageSvc binaryStorageSvc() {
        return new DatabaseBinaryContentStorageSvcImpl();
    }

    // ------------------------------------------------------------------ REST server

    @Bean
    public RestfulServer restfulServer(
            IFhirSystemDao<?, ?> systemDao,
            ResourceProviderFactory resourceProviderFactory,
            IJpaSystemProvider systemProvider,
            JpaStorageSettings storageSettings,
            ISearchParamRegistry searchParamRegistry,
            @Qualifier(JpaConfig.JPA_VALIDATION_SUPPORT_CHAIN) IValidationSupport validationSupport,
            DatabaseBackedPagingProvider pagingProvider) {
        RestfulServer server = new RestfulServer(systemDao.getContext());
        server.registerProviders(resourceProviderFactory.createProviders());
        server.registerProvider(systemProvider);
        server.setServerConformanceProvider(new JpaCapabilityStatementProvider(
                server, systemDao, storageSettings, searchParamRegistry, validationSupport));
        server.setPagingProvider(pagingProvider);
        server.setDefaultResponseEncoding(EncodingEnum.JSON);
        server.setServerAddressStrategy(new IncomingRequestAddressStrategy());
        return server;
    }

    @Bean
    public ServletRegistrationBean<RestfulServer> fhirServletRegistration(
            RestfulServer restfulServer, ConfigurableListableBeanFactory beanFactory) {
        beanFactory.autowireBean(restfulServer);
        ServletRegistrationBean<RestfulServer> registration =
                new ServletRegistrationBean<>(restfulServer, "/fhir/*");
        registration.setName("fhirServlet");
        registration.setLoadOnStartup(1);
        return registration;
    }

    /** Resolves the Hibernate dialect and data source from our entity manager factory. */
    static final class SandboxHibernatePropertiesProvider extends HibernatePropertiesProvider {

        private final LocalContainerEntityManagerFactoryBean entityManagerFactory;
        private volatile Dialect dialect;

        SandboxHibernatePropertiesProvider(LocalContainerEntityManagerFactoryBean entityManagerFactory) {
            this.entityManagerFactory = entityManagerFactory;
        }

        @Override
        public Dialect getDialect() {
            Dialect current = dialect;
            if (current == null) {
                Object name = entityManagerFactory.getJpaPropertyMap().get("hibernate.dialect");
                String className = name == null ? DEFAULT_DIALECT : name.toString();
                try {
                    current = (Dialect) Class.forName(className).getDeclaredConstructor().newInstance();
                } catch (ReflectiveOperationException | ClassCastException e) {
                    throw new IllegalStateException("Cannot instantiate Hibernate dialect " + className, e);
                }
                dialect = current;
            }
            return current;
        }

        @Override
        public DataSource getDataSource() {
            return entityManagerFactory.getDataSource();
        }
    }
}
