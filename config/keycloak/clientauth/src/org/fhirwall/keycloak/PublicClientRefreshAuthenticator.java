package org.fhirwall.keycloak;

import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.MultivaluedMap;
import java.util.Base64;
import java.util.Map;
import org.keycloak.OAuth2Constants;
import org.keycloak.authentication.ClientAuthenticationFlowContext;
import org.keycloak.authentication.authenticators.client.ClientIdAndSecretAuthenticator;
import org.keycloak.models.ClientModel;
import org.keycloak.util.JsonSerialization;

/**
 * Keycloak's "client-secret" client authenticator, which also identifies a <em>public</em> client that
 * refreshes without naming itself.
 *
 * <p>Browser SMART apps refresh the way RFC 6749 §6 allows a public client to: {@code grant_type} and
 * {@code refresh_token}, no {@code client_id} (the SMART JS client fhirclient does exactly this unless the
 * app sets {@code refreshTokenWithClientId}). Keycloak identifies every client, public ones included, by
 * {@code client_id} or credentials, and answers such a refresh {@code invalid_client}. This authenticator
 * takes the client from the refresh token's {@code azp} when the request names no client at all and that
 * client is public, then authenticates exactly as the built-in one does. It proves nothing a public client's
 * {@code client_id} parameter would not: a public client has no credentials, and the refresh grant still
 * verifies the token's signature and that it was issued to this client. Confidential clients gain nothing:
 * their refresh without credentials is refused as before.
 *
 * <p>It replaces the built-in factory by having the same id ("client-secret"): Keycloak's ProviderManager
 * prefers a deployed factory over an internal one of the same id. It is also the only authenticator Keycloak
 * accepts for a public client (ClientAuthenticationFlow), which is why it extends rather than sits beside it.
 */
public class PublicClientRefreshAuthenticator extends ClientIdAndSecretAuthenticator {

    @Override
    public void authenticateClient(ClientAuthenticationFlowContext context) {
        String clientId = unnamedPublicRefresher(context);
        if (clientId != null) {
            // ClientIdAndSecretAuthenticator falls back to this session attribute when no client_id was sent.
            context.getSession().setAttribute(OAuth2Constants.CLIENT_ID, clientId);
        }
        super.authenticateClient(context);
    }

    @Override
    public String getHelpText() {
        return super.getHelpText() + "; a public client's refresh that names no client is taken from the refresh token's azp";
    }

    /** The public client a refresh request without any client identification is for, or null. */
    static String unnamedPublicRefresher(ClientAuthenticationFlowContext context) {
        HttpHeaders headers = context.getHttpRequest().getHttpHeaders();
        if (headers.getRequestHeaders().getFirst(HttpHeaders.AUTHORIZATION) != null) {
            return null;
        }
        MediaType type = headers.getMediaType();
        if (type == null || !type.isCompatible(MediaType.APPLICATION_FORM_URLENCODED_TYPE)) {
            return null;
        }
        MultivaluedMap<String, String> form = context.getHttpRequest().getDecodedFormParameters();
        if (!OAuth2Constants.REFRESH_TOKEN.equals(form.getFirst(OAuth2Constants.GRANT_TYPE))
                || form.containsKey(OAuth2Constants.CLIENT_ID)
                || form.containsKey(OAuth2Constants.CLIENT_ASSERTION)) {
            return null;
        }
        String token = form.getFirst(OAuth2Constants.REFRESH_TOKEN);
        String[] parts = token == null ? new String[0] : token.split("\\.");
        if (parts.length != 3) {
            return null;
        }
        Object azp;
        try {
            azp = JsonSerialization.readValue(Base64.getUrlDecoder().decode(parts[1]), Map.class).get("azp");
        } catch (Exception e) {
            return null; // not a token Keycloak issued; the built-in path refuses the request as before
        }
        if (!(azp instanceof String id)) {
            return null;
        }
        ClientModel client = context.getSession().clients().getClientByClientId(context.getRealm(), id);
        return client != null && client.isPublicClient() ? id : null;
    }
}
