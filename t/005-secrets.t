# The secrets check that ends every run of scripts/run-suite.sh
# (scripts/check-secrets.pl over what the run recorded): it finds a key
# of t/data/secrets.txt in a log line, an answer or a provider request,
# and lets pass what is not a leak.

use strict;
use warnings;

use File::Temp qw(tempdir);
use Test::More;

my $dir = tempdir(CLEANUP => 1);

sub check {
    my (%files) = @_;
    my $d = tempdir(DIR => $dir);
    for my $f (keys %files) {
        open my $fh, '>', "$d/$f" or die $!;
        print $fh $files{$f};
        close $fh;
    }
    my $out = `perl scripts/check-secrets.pl t/data/secrets.txt $d 2>&1`;
    return ($? == 0, $out);
}

my $t = '2026/01/01 00:00:00';
my ($ok, $out);

($ok, $out) = check('logs.1' => "$t [info] 1#1: *1 aigw: sk-aigw-test-good\n");
ok(!$ok, 'a client key in a log line');
like($out, qr/client key "sk-aigw-test-good" in .*logs\.1:1/, 'where');

($ok, $out) = check('logs.1' => "$t [error] 1#1: key sk-provider-secret\n");
ok(!$ok, 'a provider key in a log line');

($ok, $out) = check('responses.1' => "=== b\n>>> GET /metrics\n"
                    . "HTTP/1.1 200 OK\r\n\r\nx{key=\"sk-acme\"} 1\n");
ok(!$ok, 'a client key in a metric');
like($out, qr/in the answer to "GET \/metrics"/, 'which answer');

($ok, $out) = check('responses.1' => "=== b\n>>> POST /v1/x HTTP/1.1\n"
                    . '{"error":{"message":"sk-provider"}}' . "\n");
ok(!$ok, 'a provider key in an error body');

($ok, $out) = check('mock.1.jsonl' =>
                    '{"headers":{"x-api-key":"sk-aigw-two"}}' . "\n");
ok(!$ok, 'a client key in a provider request');

($ok, $out) = check(
    'mock.1.jsonl' => '{"headers":{"authorization":"Bearer '
                      . 'sk-provider-secret"}}' . "\n",
    'responses.1' => "=== b\n>>> GET /_mock/last HTTP/1.1\n"
                     . "Bearer sk-provider-secret\n",
    'logs.1' => "$t [debug] 1#1: *1 http header: \"Authorization: Bearer "
                . "sk-aigw-test-good\"\n"
                . "$t [debug] 1#1: *1 http proxy header:\n"
                . "\"POST /v1/x HTTP/1.0\nAuthorization: Bearer "
                . "sk-provider-secret\n\"\n"
                . "$t [info] 1#1: *1 aigw: key \"key_good\", hash "
                . "d1b1c9e0ba2a7c0b\n");
ok($ok, 'a provider key to the provider, nginx\'s own debug dumps, '
        . 'the mock\'s introspection, ids and hashes pass') or diag $out;

($ok, $out) = check('logs.1' => "$t [debug] 1#1: *1 http proxy header:\n"
                    . "\"Authorization: Bearer sk-aigw-one\n\"\n");
ok(!$ok, 'a client key in a request nginx proxies');

# the key files hold hashes; the secrets are distinctive
open my $fh, '<', 't/data/secrets.txt' or die $!;
my @secrets = map { /^(?:provider|client)\s+(\S+)/ ? $1 : () } <$fh>;
ok(@secrets > 10, 'the list has the suites\' keys');
ok(!(grep { length $_ < 7 } @secrets), 'no canary shorter than 7 bytes');

done_testing;
