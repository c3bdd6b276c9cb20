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

done_testing();
