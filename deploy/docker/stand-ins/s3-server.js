// Stand-in for MinIO (`minio server DIR`): s3rver, an S3-compatible server keeping objects as files
// under DIR. Only MINIO_ROOT_USER is accepted as access key id; s3rver does not verify SigV4
// signatures, so the secret is not checked. There is no console.
// Built by deploy/docker/local-images.sh for machines that cannot pull quay.io/minio/minio.
'use strict';
const S3rver = require('s3rver');
const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');

const [command, directory] = process.argv.slice(2);
if (command !== 'server' || !directory) {
  console.error('usage: minio server DIR [--console-address ADDR]  (s3rver stand-in; the console is not served)');
  process.exit(2);
}
const user = process.env.MINIO_ROOT_USER;
const password = process.env.MINIO_ROOT_PASSWORD;
if (!user || !password) {
  console.error('MINIO_ROOT_USER and MINIO_ROOT_PASSWORD must be set');
  process.exit(2);
}
require('fs').mkdirSync(directory, { recursive: true });
DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
DUMMY_ACCOUNT.createKeyPair(user, password);
console.log('S3 stand-in for MinIO: s3rver on :9000, data in ' + directory);
// Path-style only: with virtual hosts on, s3rver would take the host name (minio) for a bucket.
new S3rver({ directory, address: '0.0.0.0', port: 9000, silent: true, vhostBuckets: false }).run().catch((error) => {
  console.error(error);
  process.exit(1);
});
