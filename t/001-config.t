# Misconfigurations are refused by "nginx -t" with the file, the line and
# what is wrong.  Plain Test::More: these configurations never start.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use Cwd qw(abs_path);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless @modules;

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/logs";

sub nginx_t {
    my ($http, %env) = @_;

    my $conf = "$dir/nginx.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh "load_module $_;\n" for @modules;
    print $fh "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n",
              "events { worker_connections 16; }\n",
              "http {\n$http\n",
              "    server { listen 127.0.0.1:1; location /v1/ { aigw_pass; } }\n",
              "}\n";
    close $fh;

    local %ENV = (%ENV, %env);
    my $out = `$nginx -p $dir -c $conf -t 2>&1`;
    return ($? == 0, $out);
}

my $provider = 'aigw_provider p http://127.0.0.1:9/v1 key_env=AIGW_T_KEY;';
my %key = (AIGW_T_KEY => 'sk-test');

my ($ok, $out);

($ok, $out) = nginx_t("$provider\naigw_model m p:gpt-4o;", %key);
ok($ok, 'a good configuration passes') or diag $out;

($ok, $out) = nginx_t("$provider\naigw_model m q:gpt-4o;", %key);
ok(!$ok, 'unknown provider is refused');
like($out, qr/unknown aigw provider "q" in model "m".*nginx\.conf:7/,
     'unknown provider: message, file and line');

($ok, $out) = nginx_t("$provider\naigw_model m p:a;\naigw_model m p:b;",
                      %key);
ok(!$ok, 'duplicate model is refused');
like($out, qr/aigw model "m" is duplicate.*nginx\.conf:8/,
     'duplicate model: message, file and line');

($ok, $out) = nginx_t("aigw_provider p ftp://h/v1;", %key);
ok(!$ok, 'a URL that is not http(s) is refused');
like($out, qr/invalid URL "ftp:\/\/h\/v1" of aigw provider "p".*nginx\.conf:6/,
     'bad URL: message and line');

($ok, $out) = nginx_t("aigw_provider p http://127.0.0.1:99999/v1;", %key);
ok(!$ok, 'a bad port is refused');
like($out, qr/invalid port.*aigw provider "p"/, 'bad port: message');

($ok, $out) = nginx_t(
    'aigw_provider p http://127.0.0.1:9/v1 key_env=AIGW_T_UNSET_VAR;');
ok(!$ok, 'a missing key variable is refused');
like($out, qr/environment variable "AIGW_T_UNSET_VAR" is not set.*nginx\.conf:6/,
     'missing env var: message and line');
unlike($out, qr/sk-test/, 'no secret in the message');

($ok, $out) = nginx_t(
    "aigw_provider p http://127.0.0.1:9/v1 key_file=$dir/nonexistent;");
ok(!$ok, 'a missing key file is refused');
like($out, qr/nonexistent/, 'missing key file: named');

open my $kf, '>', "$dir/key" or die;
print $kf "sk-from-file\n";
close $kf;

($ok, $out) = nginx_t(
    "aigw_provider p http://127.0.0.1:9/v1 key_file=$dir/key;\n"
    . "aigw_model m p:x;");
ok($ok, 'a key file is read') or diag $out;

($ok, $out) = nginx_t("$provider\n$provider", %key);
ok(!$ok, 'duplicate provider is refused');
like($out, qr/aigw provider "p" is duplicate, first defined in .*:6 in .*:7/s,
     'duplicate provider: both places');

($ok, $out) = nginx_t(
    "aigw_provider p http://127.0.0.1:9/v1 format=gemini;", %key);
ok(!$ok, 'unknown format is refused');
like($out, qr/invalid format "gemini"/, 'unknown format: message');

($ok, $out) = nginx_t("$provider\naigw_model m p:x;\naigw_route r m nope;",
                      %key);
ok(!$ok, 'route with an unknown model is refused');
like($out, qr/unknown aigw model "nope" in route "r".*nginx\.conf:8/,
     'unknown model in route: message and line');

($ok, $out) = nginx_t("$provider\naigw_model m p:x;\naigw_route m m;",
                      %key);
ok(!$ok, 'a route with the name of a model is refused');

($ok, $out) = nginx_t("$provider\naigw_model m p:x input=abc;", %key);
ok(!$ok, 'a bad price is refused');
like($out, qr/invalid price "input=abc"/, 'bad price: message');

($ok, $out) = nginx_t("$provider\naigw_model m p:x bogus=1;", %key);
ok(!$ok, 'an unknown parameter is refused');
like($out, qr/invalid parameter "bogus=1"/, 'unknown parameter: message');

($ok, $out) = nginx_t("$provider\naigw_model m p;", %key);
ok(!$ok, 'an upstream model without provider is refused');
like($out, qr/must be "provider:model"/, 'provider:model: message');

($ok, $out) = nginx_t(
    "aigw_provider p http://127.0.0.1:9/v1 key_env=AIGW_T_KEY "
    . "key_file=/x;", %key);
ok(!$ok, 'two keys are refused');

# aigw_pass with a fixed route that does not exist
{
    my $conf = "$dir/pass.conf";
    open my $fh, '>', $conf or die;
    print $fh "load_module $_;\n" for @modules;
    print $fh "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n",
              "events { worker_connections 16; }\n",
              "http {\n$provider\naigw_model m p:x;\n",
              "    server { listen 127.0.0.1:1;\n",
              "        location /v1/ { aigw_pass nosuch; } }\n}\n";
    close $fh;
    local $ENV{AIGW_T_KEY} = 'sk-test';
    my $o = `$nginx -p $dir -c $conf -t 2>&1`;
    ok($? != 0, 'aigw_pass with an unknown route is refused');
    like($o, qr/unknown aigw route or model "nosuch".*pass\.conf:9/,
         'unknown route: message and line');
}

# key files: an error names the entry and the field
{
    my $h = 'a' x 64;
    my %files = (
        'notjson.json' => '{"keys": [',
        'nohash.json'  => '[{"id":"k1","tenant":"t"}]',
        'badhash.json' => '{"keys":[{"id":"k0","hash":"' . $h . '",'
                          . '"tenant":"t"},{"id":"k1","hash":"xyz",'
                          . '"tenant":"t"}]}',
        'notenant.json' => '[{"id":"k1","hash":"' . $h . '"}]',
        'dup.json' => '[{"id":"k1","hash":"' . $h . '","tenant":"t"},'
                      . '{"id":"k2","hash":"' . uc($h) . '","tenant":"t"}]',
        'badtype.json' => '[{"id":"k1","hash":"' . $h . '","tenant":"t",'
                          . '"models":"gpt-4o"}]',
        'badexp.json' => '[{"id":"k1","hash":"' . $h . '","tenant":"t",'
                         . '"expires_at":"tomorrow"}]',
        'ctl.json' => '[{"id":"k1","hash":"' . $h . '","tenant":"a\\r\\nX: y"}]',
        'metactl.json' => '[{"id":"k1","hash":"' . $h . '","tenant":"t",'
                          . '"metadata":{"a":"b\\r\\nX: y"}}]',
        'metaname.json' => '[{"id":"k1","hash":"' . $h . '","tenant":"t",'
                           . '"metadata":{"a\\u0001":"b"}}]',
        'good.json' => '[{"id":"k1","hash":"' . $h . '","tenant":"t",'
                       . '"limits":{"rpm":60},"budget":{"usd":5.5,'
                       . '"period":"day"},"metadata":{"a":"b"},'
                       . '"models":["gpt-*"],"expires_at":1900000000}]',
    );

    for my $f (keys %files) {
        open my $k, '>', "$dir/$f" or die;
        print $k $files{$f};
        close $k;
    }

    my $p = "$provider\naigw_model m p:x;";

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/good.json;", %key);
    ok($ok, 'a good key file is loaded') or diag $out;

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/missing.json;", %key);
    ok(!$ok, 'a missing key file is refused');
    like($out, qr/open\(\) key file ".*missing\.json" failed.*nginx\.conf:8/,
         'missing key file: file and line');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/notjson.json;", %key);
    like($out, qr/key file ".*notjson\.json" is not valid JSON/,
         'a key file that is not JSON');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/nohash.json;", %key);
    like($out, qr/entry 1 \(id "k1"\): field "hash" is missing/,
         'a missing hash: entry and field');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/badhash.json;", %key);
    like($out, qr/entry 2 \(id "k1"\): field "hash" must be 64 hexadecimal/,
         'a bad hash: entry and field');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/notenant.json;", %key);
    like($out, qr/entry 1 \(id "k1"\): field "tenant" is missing/,
         'a missing tenant');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/dup.json;", %key);
    like($out, qr/entry 2 \(id "k2"\): "hash" is the hash of another key/,
         'a duplicate hash');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/badtype.json;", %key);
    like($out, qr/field "models" must be an array/, 'models of a wrong type');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/badexp.json;", %key);
    like($out, qr/field "expires_at" must be/, 'a bad expiry');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/ctl.json;", %key);
    like($out, qr/field "tenant" has a control character/,
         'a control character in a tenant');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/metactl.json;", %key);
    like($out, qr/entry 1 \(id "k1"\): field "metadata" has a control char/,
         'a control character in a metadata value');

    ($ok, $out) = nginx_t("$p\naigw_keys $dir/metaname.json;", %key);
    like($out, qr/field "metadata" has a control character/,
         'a control character in a metadata name');

    open my $pf, '>', "$dir/prices-bad.json" or die;
    print $pf '{"x": {"input_cost_per_token": "cheap"}}';
    close $pf;

    ($ok, $out) = nginx_t("aigw_prices $dir/nope.json;\n$provider\n"
                          . "aigw_model m p:x;", %key);
    ok(!$ok, 'a missing price file is refused');
    like($out, qr/price file ".*nope\.json" failed/, 'named');

    ($ok, $out) = nginx_t("aigw_prices $dir/prices-bad.json;\n$provider\n"
                          . "aigw_model m p:x;", %key);
    like($out, qr/the prices of "x" are not numbers of dollars per token/,
         'a price that is not a number is refused');

    ($ok, $out) = nginx_t("aigw_prices $dir/notjson.json;\n$provider\n"
                          . "aigw_model m p:x;", %key);
    like($out, qr/price file ".*" is not a JSON object/,
         'a price file that is not JSON');

    ($ok, $out) = nginx_t("$p\naigw_metrics_zone z:1k;", %key);
    like($out, qr/invalid zone size "z:1k"/, 'a metrics zone too small');

    ($ok, $out) = nginx_t("$p\naigw_metrics_zone z:1m max_series=0;", %key);
    like($out, qr/invalid parameter "max_series=0"/, 'a bad max_series');

    ($ok, $out) = nginx_t("$p\naigw_auth on;", %key);
    ok(!$ok, 'aigw_auth on without keys is refused');
    like($out, qr/"aigw_auth" is on, but no "aigw_keys" file is loaded/,
         'aigw_auth without keys: message');
}

($ok, $out) = nginx_t("$provider\naigw_answer_buffer lots;", %key);
ok(!$ok, 'a bad aigw_answer_buffer is refused');
like($out, qr/"aigw_answer_buffer" directive invalid value/,
     'aigw_answer_buffer: message');

done_testing();
