package org.fhirwall.keycloak;

import java.util.Arrays;
import java.util.Set;
import java.util.stream.Collectors;
import org.keycloak.OAuthErrorException;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.representations.idm.ClientPolicyExecutorConfigurationRepresentation;
import org.keycloak.services.clientpolicy.ClientPolicyContext;
import org.keycloak.services.clientpolicy.ClientPolicyEvent;
import org.keycloak.services.clientpolicy.ClientPolicyException;
import org.keycloak.services.clientpolicy.context.AuthorizationRequestContext;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;

/**
 * Refuses an authorization request whose {@code aud} is missing or is not one of the realm's FHIR bases.
 *
 * <p>SMART App Launch 2.x §"Obtain authorization code": the app sends {@code aud} = the FHIR base it launches
 * against, and the authorization server must refuse a base it does not serve, so a token is never minted for
 * an attacker's server. The bases are the realm attribute {@value #BASES_ATTRIBUTE}, separated by whitespace
 * or commas; one trailing slash is ignored on both sides, otherwise the comparison is exact. Clients listed
 * in {@value #EXEMPT_ATTRIBUTE} (Keycloak's account console, the SMART management_endpoint) are not checked.
 *
 * <p>A client policy executor runs on Keycloak's AUTHORIZATION_REQUEST event for every request, with or
 * without an SSO session, before any code is issued; Keycloak answers a refusal with error and
 * error_description on the (already validated) redirect_uri.
 */
public class SmartAudienceExecutor implements ClientPolicyExecutorProvider<ClientPolicyExecutorConfigurationRepresentation> {

    static final String BASES_ATTRIBUTE = "fhirwall.smart.fhirBases";
    /** Client ids that are not SMART apps (Keycloak's own account console): they launch against no FHIR base. */
    static final String EXEMPT_ATTRIBUTE = "fhirwall.smart.audExemptClients";

    private final KeycloakSession session;

    SmartAudienceExecutor(KeycloakSession session) {
        this.session = session;
    }

    @Override
    public String getProviderId() {
        return SmartAudienceExecutorFactory.ID;
    }

    @Override
    public void executeOnEvent(ClientPolicyContext context) throws ClientPolicyException {
        if (context.getEvent() != ClientPolicyEvent.AUTHORIZATION_REQUEST) {
            return;
        }
        RealmModel realm = session.getContext().getRealm();
        AuthorizationRequestContext request = (AuthorizationRequestContext) context;
        if (request.getClient() != null && list(realm, EXEMPT_ATTRIBUTE).contains(request.getClient().getClientId())) {
            return;
        }
        String aud = request.getRequestParameters().getFirst("aud");
        if (aud == null || aud.isBlank()) {
            throw new ClientPolicyException(OAuthErrorException.INVALID_REQUEST,
                    "aud is required: the FHIR base URL the app launches against");
        }
        if (!list(realm, BASES_ATTRIBUTE).contains(trim(aud))) {
            throw new ClientPolicyException(OAuthErrorException.INVALID_REQUEST,
                    "aud is not a FHIR server this authorization server serves");
        }
    }

    /** The realm attribute's values, separated by whitespace or commas, each without one trailing slash. */
    static Set<String> list(RealmModel realm, String attribute) {
        String v = realm == null ? null : realm.getAttribute(attribute);
        if (v == null) {
            return Set.of(); // not configured: every launch is refused rather than any aud accepted
        }
        return Arrays.stream(v.split("[\\s,]+")).filter(s -> !s.isEmpty())
                .map(SmartAudienceExecutor::trim).collect(Collectors.toUnmodifiableSet());
    }

    static String trim(String s) {
        return s.endsWith("/") ? s.substring(0, s.length() - 1) : s;
    }
}
