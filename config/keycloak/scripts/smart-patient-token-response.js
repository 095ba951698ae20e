/*
 * fhirwall: SMART App Launch 2.x, "Launch context arrives with your access_token": the token response
 * carries "patient" next to access_token when launch/patient was granted.
 *
 * Keycloak's built-in user-attribute mapper cannot write to the token response (only the user-session-note,
 * hardcoded-claim and script mappers implement OIDCAccessTokenResponseMapper), so this script mapper does it.
 * Deployed as a provider JAR (test/stack/keycloak.sh builds it from this directory); needs the preview
 * feature "scripts" (kc.sh --features=scripts). Provider id: script-smart-patient-token-response.js
 *
 * Bindings: user, realm, token / tokenResponse, userSession, keycloakSession. The value of the last
 * expression becomes the claim value.
 */
user ? user.getFirstAttribute("patient") : null;
