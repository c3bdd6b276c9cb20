# "make demo" shows what it says: scripts/demo.sh starts the gateway of
# examples/demo.conf and the mock on free ports, and every command of the
# tour it prints works as printed; "scripts/demo.sh stop" stops both.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my ($module) = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

sub free_port {
    return IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                 LocalPort => 0)->sockport;
}

my $tmp = $ENV{AIGW_TEST_TMPDIR};
my $prefix = tempdir('aigw-demo.XXXXXX', CLEANUP => 1,
                     $tmp && -d $tmp ? (DIR => $tmp) : (TMPDIR => 1));

$ENV{AIGW_MODULE} = $module;
$ENV{NGINX_BINARY} = $nginx;
# the workers write the audit log in it (nobody, when run as root)
chmod 0755, $prefix;
$ENV{AIGW_DEMO_PREFIX} = $prefix;
$ENV{AIGW_DEMO_PORT} = free_port();
$ENV{AIGW_DEMO_MOCK_PORT} = free_port();
delete $ENV{OPENAI_API_KEY};
delete $ENV{ANTHROPIC_API_KEY};

my $started;
END { system('bash', 'scripts/demo.sh', 'stop') if $started; }

my $tour = `bash scripts/demo.sh 2>&1`;
$started = 1;
is($?, 0, 'the demo starts') or diag $tour;

like($tour, qr/virtual key .*: sk-aigw-demo-alice$/m, 'it prints the key');

# the commands: "  curl ..." or "  tail ...", with "\" continuation lines
my @cmds;
my $cont = 0;
for my $line (split /\n/, $tour) {
    if ($cont) {
        $cmds[-1] .= "\n$line";
    } elsif ($line =~ /^  (curl|tail|for) /) {
        push @cmds, $line;
    }
    $cont = $line =~ /\\$/;
}

is(scalar @cmds, 17, 'the tour has seventeen commands');

my @want = (
    [ 'chat', qr/"object":"chat\.completion".*"usage":/s ],
    [ 'stream', qr/^data: \{.*^data: \[DONE\]$/ms ],
    [ 'fallback', qr/^X-Aigw-Model: gpt-4o-mini\r?\n.*^X-Aigw-Attempts: 2/msi ],
    [ '401', qr/^\{"error":\{.*"code":"missing_api_key"\}\}$/ ],
    [ 'metrics', qr/^aigw_fallbacks_total\{tenant="demo",.*\} 1$/m ],
    [ 'log', qr/"tenant":"demo".*"model":"gpt-4o-mini"
                .*"completion_tokens":"[1-9]\d*".*"cost_usd":"0\.\d+"
                .*"ttft_s":"\d/x ],
    [ 'limit', qr/^200 200 429 $/ ],
    [ 'usage', qr/^\{"object":"aigw\.usage","scope":"key","id":"key_demo_trial".*"requests_minute":2.*"rpm":2/ ],
    [ 'pii', qr/"content":"Mock answer to: mail \[EMAIL_1\]"/ ],
    [ 'translation', qr/^\{"id":"msg_.*"object":"chat\.completion".*"model":"claude-haiku".*"content":"Mock answer to: hi"/ ],
    [ 'cache', qr/^X-AIGW-Cache: MISS\r?\nX-AIGW-Cache: HIT\r?$/mi ],
    [ 'semantic', qr/^X-AIGW-Cache: SEMANTIC_HIT\r?$/mi ],
    [ 'audit', qr/^\{"v":1,.*"outcome":"[a-z_]+".*^good: \d+ records/ms ],
    [ 'rescue', qr/^X-Aigw-Model: gpt-4o-mini\r?\n.*^X-Aigw-Attempts: 2\r?\n.*^data: \[DONE\]/msi ],
    [ 'hedge', qr/^X-Aigw-Model: gpt-4o-mini\r?\n.*^X-Aigw-Attempts: 2\r?\n.*^data: \[DONE\]/msi ],
    [ 'guard', qr/^\{"error":\{"message":"The request was refused by the content policy \(injection\)\.".*"code":"guard_refused"\}\}$/ ],
    [ 'tiers', qr/^X-Aigw-Model: gpt-4o\r?$/mi ],
);

for my $i (0 .. $#want) {
    my ($name, $re) = @{ $want[$i] };
    my $cmd = $cmds[$i] // 'false';
    my $out = `$cmd 2>&1`;
    like($out, $re, "the tour's $name command") or diag "$cmd\n$out";
}

my $pid = do { local (@ARGV, $/) = "$prefix/logs/nginx.pid"; <> } // '';
chomp $pid;
my $mock = do { local (@ARGV, $/) = "$prefix/mock.pid"; <> } // '';
chomp $mock;

my $out = `bash scripts/demo.sh stop 2>&1`;
$started = 0;
is($?, 0, 'the demo stops') or diag $out;
ok($pid && !kill(0, $pid), 'nginx is gone');
ok($mock && !kill(0, $mock), 'the mock is gone');

done_testing();
