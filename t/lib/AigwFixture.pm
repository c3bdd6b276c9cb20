package AigwFixture;

# What the plain Test::More suites with nginx of their own share (the
# cache's and the audit log's: t/152-154, t/160-162): the mock provider,
# nginx (AigwNginx) and a real Redis (AigwRedis), the whole suite
# skipped when the module or redis-server is missing.
#
#   BEGIN { push @INC, 't/lib' }
#   use AigwFixture;                     # the mock started; Test::More
#   my @ngx = suite_nginx(2);            # skip_all without the module
#   my $redis = suite_redis(password => 'pw');
#                                        # skip_all without redis-server,
#                                        # BAIL_OUT when it does not start
#   mock_port();                         # the mock provider's port
#   embed_location('/_embed', "http://127.0.0.1:$mock/v1/embeddings");
#                                        # a semantic cache's embedder
#   my $audit = audit_setup($ngx);       # aigw_audit's folder, the key
#                                        # conf/sign.pem, dir/sign.pub
#   ed25519_key($pem, $pub);             # another key pair
#
# Then $ngx->write_keys(...), $ngx->write_http(...): see AigwNginx.

use strict;
use warnings;

use Exporter ();
use Test::More ();

use AigwMock;
use AigwNginx;
use AigwRedis;

our @ISA    = qw(Exporter);
our @EXPORT = qw(suite_nginx suite_redis mock_port embed_location
                 audit_setup ed25519_key);

sub suite_nginx {
    my ($n) = @_;
    my @ngx = map { AigwNginx->new } 1 .. ($n // 1);

    Test::More::plan(skip_all =>
                     'TEST_NGINX_LOAD_MODULES does not name the module')
        unless $ngx[0]->module;

    return wantarray ? @ngx : $ngx[0];
}

sub suite_redis {
    my (%opt) = @_;

    Test::More::plan(skip_all =>
                     'no /usr/bin/redis-server (Debian: redis-server)')
        unless AigwRedis::available();

    my $redis = AigwRedis->new(%opt)
        or Test::More::BAIL_OUT('redis-server does not start');

    return $redis;
}

sub mock_port { AigwMock::mock_port() }

# an internal location that posts the subrequest's body to $url, as
# aigw_cache_semantic asks its embedder; @extra: more of its lines
sub embed_location {
    my ($name, $url, @extra) = @_;

    return "        location = $name {\n"
         . "            internal;\n"
         . "            proxy_pass $url;\n"
         . "            proxy_pass_request_headers off;\n"
         . "            proxy_set_header Content-Type application/json;\n"
         . "            subrequest_output_buffer_size 64k;\n"
         . join('', map { "            $_\n" } @extra)
         . "        }\n";
}

# an audit log's folder ($dir/audit) that the workers reach, and its
# signing key: conf/sign.pem, the public half in $dir/sign.pub
sub audit_setup {
    my ($ngx) = @_;
    my $dir = $ngx->dir;

    mkdir "$dir/audit" or die "$dir/audit: $!";

    # the workers (nobody, when the tests run as root) reach the folder
    chmod 0755, $dir;

    ed25519_key("$dir/conf/sign.pem", "$dir/sign.pub")
        or Test::More::BAIL_OUT('openssl: no ed25519 key pair');

    return "$dir/audit";
}

sub ed25519_key {
    my ($pem, $pub) = @_;

    return system("openssl genpkey -algorithm ed25519 -out $pem "
                  . "2>/dev/null") == 0
           && system("openssl pkey -in $pem -pubout -out $pub") == 0;
}

1;
