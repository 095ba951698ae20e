// Dynamic Client Registration as a real client library does it: openid-client 5.x (npm, installed by
// test/stack/chromium.sh into $FHIRWALL_NODE_MODULES) registers clients at fhirwall's /register (RFC 7591),
// reads them back with their registration access tokens (RFC 7592), and reports the RFC errors it gets.
// Argument: {"base": "<fhirwall portal origin>", "clients": {name: metadata}, "bad": {name: metadata}}.
// Prints one JSON object: {"registered": {name: client metadata}, "read": {name: metadata},
// "errors": {name: {name, error, error_description, status}}}.
import { createRequire } from 'node:module';
import { generateKeyPairSync } from 'node:crypto';

const require = createRequire(process.env.FHIRWALL_NODE_MODULES + '/');
const { Issuer } = require('openid-client');

const arg = JSON.parse(process.argv[2]);
const issuer = new Issuer({ issuer: arg.base, registration_endpoint: arg.base + '/register' });

function failure(err) {
  return {
    name: err.name,
    error: err.error,
    error_description: err.error_description,
    status: err.response && err.response.statusCode,
    www_authenticate: err.response && err.response.headers['www-authenticate'],
  };
}

const out = { registered: {}, read: {}, errors: {} };

for (const [name, metadata] of Object.entries(arg.clients)) {
  const opts = {};
  if (metadata.token_endpoint_auth_method === 'private_key_jwt') {
    // The library derives the public JWKS it registers from the private key it keeps.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    opts.jwks = { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: name, alg: 'ES256', use: 'sig' }] };
  }
  const client = await issuer.Client.register(metadata, opts);
  out.registered[name] = client.metadata;
  const read = await issuer.Client.fromUri(client.registration_client_uri, client.registration_access_token);
  out.read[name] = read.metadata;
}

for (const [name, metadata] of Object.entries(arg.bad)) {
  try {
    await issuer.Client.register(metadata);
    out.errors[name] = { error: 'none: registered' };
  } catch (err) {
    out.errors[name] = failure(err);
  }
}

// A registration access token that is not the client's.
const first = Object.values(out.registered)[0];
try {
  await issuer.Client.fromUri(first.registration_client_uri, 'not-the-token');
  out.errors['wrong token'] = { error: 'none: read' };
} catch (err) {
  out.errors['wrong token'] = failure(err);
}

process.stdout.write(JSON.stringify(out));
