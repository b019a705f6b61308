package org.oncovigil.sandbox;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;

/**
 * OncoVigil FHIR R4 sandbox: a HAPI FHIR JPA server on an H2 database, served at {@code /fhir}.
 *
 * <p>HAPI schedules its own Quartz jobs and needs no Thymeleaf views or Elasticsearch client,
 * so Spring Boot's auto-configuration for those is switched off. All FHIR wiring lives in
 * {@link SandboxFhirConfig}.
 */
@SpringBootApplication(
        exclude = {
            ElasticsearchRestClientAutoConfiguration.class,
            QuartzAutoConfiguration.class,
            ThymeleafAutoConfiguration.class
        })
public class SandboxApplication {

    public static void main(String[] args) {
        SpringApplication.run(SandboxApplication.class, args);
    }
}
