package org.fhirwall.keycloak;

import java.util.List;
import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProviderFactory;

/** Registers {@link SmartAudienceExecutor}; the realm's client profile names it by {@link #ID}. */
public class SmartAudienceExecutorFactory implements ClientPolicyExecutorProviderFactory {

    static final String ID = "fhirwall-smart-aud";

    @Override
    public ClientPolicyExecutorProvider create(KeycloakSession session) {
        return new SmartAudienceExecutor(session);
    }

    @Override
    public void init(Config.Scope config) {
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public void close() {
    }

    @Override
    public String getId() {
        return ID;
    }

    @Override
    public String getHelpText() {
        return "Refuses an authorization request whose aud is missing or not in the realm attribute "
                + SmartAudienceExecutor.BASES_ATTRIBUTE + " (SMART App Launch)";
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        return List.of();
    }
}
