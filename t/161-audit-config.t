# aigw_audit misconfigurations are refused by "nginx -t" with the file, the
# line and what is wrong.  Plain Test::More: these configurations never
# start.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless @modules;

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(logs audit);

system("openssl genpkey -algorithm ed25519 -out $dir/sign.pem 2>/dev/null")
    == 0 or BAIL_OUT('openssl genpkey');

sub write_file {
    my ($name, $text) = @_;
    open my $fh, '>', "$dir/$name" or die "$name: $!";
    print $fh $text;
    close $fh;
}

write_file('hmac.key', "0123456789abcdef0123\n");
write_file('short.key', "short\n");
write_file('not.pem', "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                      . "-----END PRIVATE KEY-----\n");

sub nginx_t {
    my ($audit) = @_;

    my $conf = "$dir/nginx.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh "load_module $_;\n" for @modules;
    print $fh "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n",
              "events { worker_connections 16; }\n",
              "http {\n",
              "    aigw_provider p http://127.0.0.1:9/v1;\n",
              "    aigw_model m p:gpt-4o;\n",
              "$audit\n",
              "    server { listen 127.0.0.1:1;\n",
              "             location /v1/ { aigw_pass; } }\n",
              "}\n";
    close $fh;

    my $out = `$nginx -p $dir/ -c $conf -t 2>&1`;
    return ($? == 0, $out);
}

my @good = (
    "aigw_audit audit;",
    "aigw_audit $dir/audit zone=1m sign_key=sign.pem hmac_key=hmac.key"
        . " origin=example.com/log node=n1 segment=10m keep=5 flush=1s;",
);

for my $c (@good) {
    my ($ok, $out) = nginx_t($c);
    ok($ok, "accepted: $c") or diag $out;
}

my @bad = (
    [ 'aigw_audit nowhere;', qr/audit folder ".*nowhere" is not a folder/ ],
    [ 'aigw_audit audit; aigw_audit audit;',
      qr/"aigw_audit" directive is duplicate/ ],
    [ 'aigw_audit audit zone=1k;', qr/invalid parameter "zone=1k"/ ],
    [ 'aigw_audit audit keep=1;', qr/invalid parameter "keep=1"/ ],
    [ 'aigw_audit audit flush=0;', qr/invalid parameter "flush=0"/ ],
    [ 'aigw_audit audit origin=a+b;', qr/invalid parameter "origin=a\+b"/ ],
    [ 'aigw_audit audit colour=blue;', qr/invalid parameter "colour=blue"/ ],
    [ 'aigw_audit audit sign_key=none.pem;', qr/cannot open signing key/ ],
    [ 'aigw_audit audit sign_key=not.pem;',
      qr/not\.pem" is not an Ed25519 private key in PEM/ ],
    [ 'aigw_audit audit sign_key=hmac.key;',
      qr/hmac\.key" is not an Ed25519 private key in PEM/ ],
    [ 'aigw_audit audit hmac_key=short.key;',
      qr/hmac key ".*short\.key" is shorter than 16 bytes/ ],
    [ 'aigw_audit audit hmac_key=none.key;',
      qr/open\(\) ".*none\.key" failed/ ],
    [ 'aigw_audit audit redis=yes;', qr/invalid parameter "redis=yes"/ ],
    # the configuration hash walks includes: a loop is refused, not run
    [ "aigw_audit audit; include $dir/nginx.conf;",
      qr/configuration hash: more than 16 levels of "include"/ ],
    [ 'aigw_audit audit; include missing.conf;',
      qr/open\(\) ".*missing\.conf" failed/ ],
);

# redis=on without aigw_redis: said at the end of the http block
{
    my ($ok, $out) = nginx_t('    aigw_audit audit redis=on;');
    ok(!$ok, 'refused: redis=on without aigw_redis');
    like($out, qr/"aigw_audit" with "redis=on" needs "aigw_redis"/,
         '... with the reason') or diag $out;
    ($ok, $out) = nginx_t("    aigw_audit audit redis=on;\n"
                          . "    aigw_redis 127.0.0.1:1;");
    ok($ok, 'accepted: redis=on, aigw_redis after it') or diag $out;
}

for my $b (@bad) {
    my ($c, $re) = @$b;
    my ($ok, $out) = nginx_t("    $c");
    ok(!$ok, "refused: $c");
    like($out, qr/$re.*nginx\.conf:8/, "... with the reason and line")
        or diag $out;
}

done_testing();
