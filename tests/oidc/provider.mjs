// A real OpenID provider (oidc-provider from npm) for the gateway's
// end-to-end tests: tests/src/oidc.rs starts it, tests/tests/oidc_provider.rs
// drives it with plain HTTP. See tests/oidc/README.md.
//
//   node tests/oidc/provider.mjs --port <port> --keys <file> [--rotate]
//
// Environment (the ports are dynamic, so the harness passes the URLs in):
//   OIDC_BACKCHANNEL_LOGOUT_URI  erp-web's backchannel_logout_uri (a gateway)
//   OIDC_REDIRECT_URI            erp-web's redirect_uri (loopback; nothing
//                                needs to listen, the test reads the Location)
//   OIDC_PLAIN_ACCESS_TOKENS=1   access tokens without `sid`, as
//                                oidc-provider issues them by default
//
// Keys: ES256 (P-256) keys live in the --keys file so that a restart keeps
// them. Without the file one key is made; --rotate prepends a new key, which
// then signs everything, and keeps the old one published (a key rotation).
//
// Prints `ready <issuer>` on stdout once it listens.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

function argument(name) {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? undefined : process.argv[at + 1];
}

const port = Number(argument('port') ?? process.env.OIDC_PORT);
const keysFile = argument('keys');
const rotate = process.argv.includes('--rotate');
if (!port || !keysFile) {
  console.error('usage: node provider.mjs --port <port> --keys <file> [--rotate]');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = 'http://erp-api';
const API_SCOPE = 'api';

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `es256-${crypto.randomBytes(6).toString('hex')}`, alg: 'ES256', use: 'sig' };
}

let keys = fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, 'utf8')).keys : [];
if (keys.length === 0 || rotate) {
  keys = [newKey(), ...keys];
  fs.writeFileSync(keysFile, JSON.stringify({ keys }));
}
// The first key signs; the others stay in the JWKS for tokens already issued.
const signingKid = keys[0].kid;

const redirectUri = process.env.OIDC_REDIRECT_URI ?? 'http://127.0.0.1:1/callback';
const backchannelUri = process.env.OIDC_BACKCHANNEL_LOGOUT_URI;

const webClient = {
  client_id: 'erp-web',
  client_secret: 'erp-web-secret',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: [redirectUri],
  post_logout_redirect_uris: [redirectUri],
};
if (backchannelUri) {
  webClient.backchannel_logout_uri = backchannelUri;
  // The logout token then names the session (`sid`), as the access tokens do.
  webClient.backchannel_logout_session_required = true;
}

const configuration = {
  clients: [
    {
      client_id: 'erp-batch',
      client_secret: 'erp-batch-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    webClient,
  ],
  jwks: { keys },
  // Everything this provider signs is ES256: ID tokens and logout tokens too.
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  cookies: { keys: ['session-gateway-oidc-suite-cookie-key'] },
  // Any account id exists; its only claim is `sub`.
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: API_SCOPE,
          audience: 'erp-api',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'ES256', kid: signingKid } },
        };
      },
    },
  },
  // The gateway links a session to the provider session it names (`sid`),
  // and a logout token names that `sid`: access tokens carry it here, as many
  // providers' do (oidc-provider's own JWT access tokens do not).
  extraTokenClaims: async (ctx, token) => (
    token.sid && process.env.OIDC_PLAIN_ACCESS_TOKENS !== '1' ? { sid: token.sid } : undefined
  ),
  // The confidential web client authenticates with its secret; the test
  // client does not do PKCE.
  pkce: { required: () => false },
  // A refresh token for every code grant of a client allowed to refresh,
  // without the `offline_access` consent dance.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: 300,
    ClientCredentials: 300,
    IdToken: 300,
    RefreshToken: 3600,
    Interaction: 300,
    Session: 3600,
    Grant: 3600,
  },
};

const provider = new Provider(issuer, configuration);
provider.on('backchannel.error', (ctx, error, client) => {
  console.error(`backchannel logout to ${client.clientId} failed: ${error.message}`);
});
provider.on('backchannel.success', (ctx, client) => {
  console.log(`backchannel logout sent to ${client.clientId}`);
});
provider.on('server_error', (ctx, error) => console.error(`server error: ${error.stack}`));

// The interaction a browser would show: log in (`login_hint`, or alice) and
// grant everything the client asked for, without a page.
async function interaction(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    const { params } = details;
    const accountId = params.login_hint || 'alice';
    const grant = new provider.Grant({ accountId, clientId: params.client_id });
    grant.addOIDCScope(String(params.scope ?? 'openid'));
    grant.addResourceScope(RESOURCE, API_SCOPE);
    const grantId = await grant.save();
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
  } catch (error) {
    console.error(`interaction failed: ${error.stack}`);
    res.statusCode = 500;
    res.end(String(error.message));
  }
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res);
  } else {
    callback(req, res);
  }
});
server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
