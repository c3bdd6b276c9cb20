# Every example configuration passes "nginx -t".  Provider host names are
# pointed at loopback first, as they are resolved when the configuration
# loads and CI has no DNS.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Basename qw(dirname basename);
use Cwd qw(abs_path);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my ($module) = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my @examples = glob("$root/examples/*.conf");

ok(scalar @examples >= 3, 'examples are there');

local $ENV{OPENAI_API_KEY} = 'sk-example';
local $ENV{AZURE_OPENAI_KEY} = 'sk-example';
local $ENV{ANTHROPIC_API_KEY} = 'sk-ant-example';

for my $file (@examples) {
    my $name = basename($file);
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    mkdir "$dir/conf";

    open my $in, '<', $file or die "$file: $!";
    local $/;
    my $conf = <$in>;
    close $in;

    $conf =~ s{^load_module\s+\S+;}{load_module $module;}m;
    $conf =~ s{https://[a-z0-9.-]+\.com(?=/)}{http://127.0.0.1:9}g;

    open my $out, '>', "$dir/conf/nginx.conf" or die;
    print $out $conf;
    close $out;

    open my $key, '>', "$dir/conf/anthropic.key" or die;
    print $key "sk-ant-example\n";
    close $key;

    system('cp', "$root/examples/keys.json", "$dir/conf/keys.json") == 0
        or die "cp keys.json";

    # examples/audit.conf: its folder and keys, as its comment makes them
    mkdir "$dir/logs/audit";
    system("openssl genpkey -algorithm ed25519 -out $dir/conf/audit-sign.pem"
           . " 2>/dev/null") == 0 or die "openssl genpkey";
    open my $hk, '>', "$dir/conf/audit-hmac.key" or die;
    print $hk "example-hmac-key-0123456789\n";
    close $hk;

    my $res = `$nginx -p $dir -c conf/nginx.conf -t 2>&1`;
    is($?, 0, "$name passes nginx -t") or diag $res;
}

done_testing();
