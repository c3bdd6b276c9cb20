# The audit log (aigw_audit): a mix of outcomes from concurrent clients,
# with reloads under the load, gives exactly one record a request; a
# worker killed with streams in flight loses none already admitted; the
# log verifies (roots, signatures, segments, retention), and an inclusion
# proof checks; no secret and no prompt is in it.  Plain Test::More: it
# needs a master, two workers, reloads and kill -9.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwFixture;

use Test::More;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $ngx = suite_nginx();
my $dir = $ngx->dir;
my $port = $ngx->port;
my $mock = mock_port();

my $cli = 'scripts/aigw-audit';
my $audit = audit_setup($ngx);

my $canary = 'CANARY-4f1e-prompt-text';
my %keys = (acme => 'sk-aigw-audit-acme', lim => 'sk-aigw-audit-limited');

$ngx->write_keys(
    { id => 'key_acme', tenant => 'acme', user => 'alice',
      key => $keys{acme} },
    { id => 'key_lim', tenant => 'globex', limits => { rpm => 5 },
      key => $keys{lim} });
$ngx->write_file('conf/hmac.key', "audit-hmac-key-0123456789abcdef\n");
$ngx->write_file('conf/provider.key', 'sk-provider-audit');

ed25519_key("$dir/other.pem", "$dir/other.pub");

sub write_conf {
    my ($extra) = @_;
    $extra //= '';
    $ngx->write_http(<<"EOC", workers => 2);
    aigw_keys keys.json;
    aigw_audit $audit sign_key=sign.pem hmac_key=hmac.key
               origin=test.example/aigw node=node-a segment=64k $extra;
    aigw_quota_zone quota:1m;
    aigw_provider ok http://127.0.0.1:$mock/v1 key_file=provider.key;
    aigw_provider s500 http://127.0.0.1:$mock/fault/status=500/v1
                  key_file=provider.key;
    aigw_provider hang http://127.0.0.1:$mock/fault/hang/v1
                  key_file=provider.key;
    aigw_provider slow http://127.0.0.1:$mock/fault/pace=40,words=40/v1
                  key_file=provider.key;
    aigw_provider cut http://127.0.0.1:$mock/fault/cut=3,chars=5/v1
                  key_file=provider.key;
    aigw_provider busy http://127.0.0.1:$mock/fault/delay=600,status=503/v1
                  key_file=provider.key;
    aigw_model gpt-4o ok:gpt-4o input=2.50 output=10.00;
    aigw_model gpt-4o-prefill ok:gpt-4o prefill;
    aigw_model cut cut:gpt-4o;
    aigw_model busy busy:gpt-4o;
    aigw_provider late http://127.0.0.1:$mock/fault/first=1500/v1
                  key_file=provider.key;
    aigw_model late late:gpt-4o;
    aigw_route resumed cut gpt-4o-prefill;
    aigw_route hedged late gpt-4o;
    aigw_model bad s500:gpt-4o;
    aigw_model stuck hang:gpt-4o;
    aigw_model paced slow:gpt-4o;
    server {
        listen 127.0.0.1:$port;
        # streams of the kill test: a busy machine may pause the mock
        location /slow/v1/ {
            aigw_read_timeout 10s;
            aigw_pass;
        }
        # a stream cut mid-answer goes on with the next model
        location /resume/v1/ {
            aigw_stream_resume on;
            aigw_pass;
        }
        # a late first token: the next model races it, and wins
        location /hedge/v1/ {
            aigw_hedge 200ms;
            aigw_pass;
        }
        # the status goes out with a keep-alive; the provider then fails
        location /ka/v1/ {
            aigw_stream_keepalive 100ms;
            aigw_pass;
        }
        # a provider that hangs: a 504 soon
        location /stuck/v1/ {
            aigw_read_timeout 300ms;
            aigw_pass;
        }
        location /v1/ {
            aigw_pii block email;
            aigw_limit key rpm=100000;
            aigw_pass;
        }
    }
EOC
}

write_conf();
ok($ngx->start, 'nginx starts with aigw_audit') or diag $ngx->start_error;

sub body {
    my ($model, $text, $stream) = @_;
    return qq({"model":"$model","stream":) . ($stream ? 'true' : 'false')
         . qq(,"messages":[{"role":"user","content":"$text $canary"}]});
}

sub call {
    my ($id, $key, $model, $text, $stream) = @_;
    my $path = $model eq 'stuck' ? '/stuck/v1/chat/completions'
             : $model eq 'resumed' ? '/resume/v1/chat/completions'
             : $model eq 'busy' ? '/ka/v1/chat/completions'
             : $model eq 'hedged' ? '/hedge/v1/chat/completions'
             : '/v1/chat/completions';
    return $ngx->request('POST', $path,
                         { 'X-Request-Id' => $id,
                           $key ? (Authorization => "Bearer $key") : () },
                         body($model, $text // 'hello', $stream))->{status};
}

# a client that goes away once the stream has started: 499
sub call_gone {
    my ($id) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 10) or return 0;
    my $b = body('paced', 'bye', 1);
    print $s "POST /slow/v1/chat/completions HTTP/1.0\r\n"
           . "Host: localhost\r\n"
           . "X-Request-Id: $id\r\nAuthorization: Bearer $keys{acme}\r\n"
           . "Content-Length: " . length($b) . "\r\n\r\n$b";
    my $got = '';
    while ($got !~ /data:/) {
        my $n = sysread $s, $got, 4096, length $got;
        last unless $n;
    }
    close $s;
    return 499;
}

# every record of the folder, in order
sub records {
    my @r;
    for my $f (sort glob "$audit/audit-*.log") {
        open my $fh, '<', $f or next;
        push @r, <$fh>;
    }
    return @r;
}

sub ids {
    my %n;
    for (records()) {
        $n{$1}++ if /"id":"([^"]+)"/;
    }
    return \%n;
}

# the records of these ids, once all are there (bounded wait)
sub wait_ids {
    my ($want, $timeout) = @_;
    my $deadline = time + ($timeout // 20);
    my $ids;
    while (time < $deadline) {
        $ids = ids();
        return $ids unless grep { !$ids->{$_} } @$want;
        sleep 0.1;
    }
    return $ids;
}

# --- a mix of outcomes, concurrent, with two reloads ------------------------

my @kinds = (
    [ 'answered',       200, sub { call($_[0], $keys{acme}, 'gpt-4o') } ],
    [ 'answered',       200, sub { call($_[0], $keys{acme}, 'gpt-4o',
                                            'streamed', 1) } ],
    [ 'denied',         401, sub { call($_[0], 'sk-aigw-audit-wrong',
                                            'gpt-4o') } ],
    [ 'blocked',        400, sub { call($_[0], $keys{acme}, 'gpt-4o',
                                            'mail bob@example.com') } ],
    [ 'provider_error', 500, sub { call($_[0], $keys{acme}, 'bad') } ],
    [ 'refused',        404, sub { call($_[0], $keys{acme}, 'nope') } ],
);

my $clients = 4;
my $per = 500;
my (%expect, @pids);

pipe my $rd, my $wr or die;

for my $c (1 .. $clients) {
    my $pid = fork // die;
    if ($pid == 0) {
        close $rd;
        srand($c);
        for my $i (1 .. $per) {
            my $k = $kinds[int rand @kinds];
            my $id = "mix-$c-$i";
            my $status = $k->[2]->($id);
            syswrite $wr, "$id $status $k->[0] $k->[1]\n";
        }
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
close $wr;

# a few of the slow kinds beside them: timeouts, a 429, clients gone
my @extra;
push @extra, [ "gone-$_", 'client_gone', 499, sub { call_gone($_[0]) } ]
    for 1 .. 3;
push @extra, [ "stuck-$_", 'timeout', 504,
               sub { call($_[0], $keys{acme}, 'stuck') } ] for 1 .. 3;
push @extra, [ "resumed-$_", 'resumed', 200,
               sub { call($_[0], $keys{acme}, 'resumed', 'one two', 1) } ]
    for 1 .. 2;
push @extra, [ "kafail-$_", 'provider_error', 200,
               sub { call($_[0], $keys{acme}, 'busy', 'hi', 1) } ]
    for 1 .. 2;
push @extra, [ "hedged-$_", 'hedged', 200,
               sub { call($_[0], $keys{acme}, 'hedged', 'hi', 1) } ]
    for 1 .. 2;
push @extra, [ "lim-$_", $_ <= 5 ? 'answered' : 'rate_limited',
               $_ <= 5 ? 200 : 429,
               sub { call($_[0], $keys{lim}, 'gpt-4o') } ] for 1 .. 7;

my $reloads = 0;
for my $r (1 .. 2) {
    sleep 0.3;
    my $old = $ngx->workers;
    $ngx->signal('HUP');
    $reloads++ if $ngx->reloaded($old, 20);
}
is($reloads, 2, 'two reloads under the load');

for my $e (@extra) {
    my $status = $e->[3]->($e->[0]);
    $expect{$e->[0]} = [$e->[1], $e->[2], $status];
}

while (my $l = <$rd>) {
    my ($id, $status, $outcome, $want) = split ' ', $l;
    $expect{$id} = [$outcome, $want, $status];
}
waitpid $_, 0 for @pids;

my @bad = grep { $expect{$_}[1] != $expect{$_}[2] } sort keys %expect;
is(scalar @bad, 0, 'every client got the status of its kind')
    or diag join "\n", map { "$_: @{$expect{$_}}" } grep { defined }
                                                     @bad[0 .. 9];

my $n = scalar keys %expect;
is($n, $clients * $per + @extra, "$n requests made");

my $ids = wait_ids([keys %expect]);
my @missing = grep { !$ids->{$_} } sort keys %expect;
my @dup = grep { $ids->{$_} > 1 } sort keys %$ids;
is(scalar @missing, 0, 'a record for every request')
    or diag "@missing[0 .. ($#missing < 9 ? $#missing : 9)]\n",
            grep { !/\[(info|notice)\]/ } split /^/m,
            $ngx->error_log;
is(scalar @dup, 0, 'no record twice')
    or diag "@dup[0 .. ($#dup < 9 ? $#dup : 9)]";
is(scalar(records()), $n, 'exactly as many records as requests');

my %outcome = map { /"id":"([^"]+)".*"outcome":"([^"]+)","status":(\d+)/
                    ? ($1 => "$2 $3") : () } records();
my @wrong = grep { ($outcome{$_} // '') ne "$expect{$_}[0] $expect{$_}[1]" }
            sort keys %expect;
is(scalar @wrong, 0, 'each record has its outcome and status')
    or diag join "\n",
       map { "$_: " . ($outcome{$_} // 'none') . " want @{$expect{$_}}" }
       grep { defined } @wrong[0 .. 5];

my ($rec) = grep { /"id":"mix-1-1"/ } records();
like($rec, qr/^\{"v":1,"ts":\d+,"tenant":"[^"]*","time":"\d{4}-\d\d-\d\dT/,
     'a record starts with its time and tenant');
like($rec, qr/"node":"node-a".*"config":"[0-9a-f]{32}"/, 'node, config hash');
my ($ok) = grep { /"outcome":"answered"/ && /"key":"key_acme"/ } records();
like($ok, qr/"user":"alice".*"provider":"ok".*"tokens":\{"prompt":\d+/,
     'an answered record: user, provider, tokens');
like($ok, qr/"body_hmac":"[0-9a-f]{64}"/, 'the body HMAC');

# --- a worker killed with streams in flight ---------------------------------

my %streams;
for my $i (1 .. 6) {
    my $pid = fork // die;
    if ($pid == 0) {
        my $res = $ngx->request('POST', '/slow/v1/chat/completions',
                                { 'X-Request-Id' => "kill-$i",
                                  Authorization => "Bearer $keys{acme}" },
                                body('paced', 'long', 1));
        POSIX::_exit($res->{body} =~ /^data: \[DONE\]/m ? 0 : 1);
    }
    $streams{$pid} = "kill-$i";
}

sleep 0.3;
my @victims = keys %{ $ngx->workers };
is(kill('KILL', @victims), 2, 'kill -9 of the workers, streams in flight');
my (@done, @cut);
for my $pid (keys %streams) {
    waitpid $pid, 0;
    push @{ $? == 0 ? \@done : \@cut }, $streams{$pid};
}
ok(@cut > 0, scalar(@cut) . ' streams cut by the kill, '
             . scalar(@done) . ' done');

my @after = map { "after-$_" } 1 .. 20;
my $good = grep { call($_, $keys{acme}, 'gpt-4o') == 200 } @after;
is($good, 20, 'the respawned workers answer');
$ids = wait_ids([@after, @done, @cut, keys %expect]);
is(scalar(grep { !$ids->{$_} } @after, keys %expect), 0,
   'nothing admitted before or after the kill is lost');
is(scalar(grep { $ids->{$_} > 1 } keys %$ids), 0, 'still none twice');
%outcome = map { /"id":"([^"]+)".*"outcome":"([^"]+)"/ ? ($1 => $2) : () }
           records();
is(join(' ', map { $outcome{$_} // 'none' } sort @cut),
   join(' ', map { 'incomplete' } @cut),
   'the streams in flight in the killed worker: incomplete records');
is(join(' ', map { $outcome{$_} // 'none' } sort @done),
   join(' ', map { 'answered' } @done), 'the others: answered');
like($ngx->error_log, qr/worker \d+ is gone: \d+ requests in flight/,
     'the error log says so');

# --- verify, query, proof ---------------------------------------------------

$ngx->stop;

my $all = () = records();
like(`$cli verify $audit --key $dir/sign.pub 2>&1`,
     qr/^good: $all records in segments 1-\d+, checkpoint $all signed/,
     'aigw-audit verify: good, every record under the signed checkpoint');
ok(scalar(glob "$audit/audit-000002.log"), 'segments rotated');

my $q = `$cli query $audit --tenant globex --count`;
is($q, "7\n", 'query by tenant');
my @q = `$cli query $audit --tenant acme --from 0 --to 99999999999999`;
ok(@q > 100 && !grep({ !/"tenant":"acme"/ } @q), 'query returns the records')
    or diag scalar(@q), " records:\n", @q[0 .. 2];
is(`$cli query $audit --tenant acme --from 2999-01-01T00:00:00Z --count`,
   "0\n", 'query by time');

is(system("$cli proof $audit 17 --out $dir/proof >/dev/null 2>&1"), 0,
   'an inclusion proof');
like(`$cli check-proof $dir/proof --key $dir/sign.pub`,
     qr/^good: leaf 17 is in the tree/, 'the proof checks');
{
    my $p = do { local (@ARGV, $/) = "$dir/proof"; <> };
    $p =~ s/("status":)(\d+)/$1 . ($2 + 1)/e;
    open my $fh, '>', "$dir/proof.bad" or die;
    print $fh $p;
}
isnt(system("$cli check-proof $dir/proof.bad >/dev/null 2>&1"), 0,
     'a proof of an edited record fails');

system("cp $audit/checkpoint $dir/trusted");

# --- secrets ----------------------------------------------------------------

my $text = join '', map { do { local (@ARGV, $/) = $_; <> } }
                    glob "$audit/*";
for my $s (values %keys, 'sk-aigw-audit-wrong', 'sk-provider-audit',
           $canary, 'bob@example.com')
{
    ok(index($text, $s) < 0, "\"$s\" is not in the audit folder");
}

if ($ENV{AIGW_SECRETS_DIR}) {
    system("cat $audit/*.log > $ENV{AIGW_SECRETS_DIR}/logs.audit.$$");
}

# --- a torn tail, marked at startup; consistency with the old checkpoint ---

{
    # the segment the writer writes to, as a power loss would leave it
    my ($cur) = do { local (@ARGV, $/) = "$audit/state"; <> }
                =~ /^segment (\d+)$/m;
    my $seg = sprintf("$audit/audit-%06d.log", $cur);
    open my $fh, '>>', $seg or die;
    # the writer's, as it would be (a new segment has no file yet)
    chown((stat $audit)[4], -1, $seg);
    print $fh '{"v":1,"ts":123,"tenant":"ac';
}

# a ring of some 25 slots: bursts wait in the workers' memory, none lost
diag `ls -la $audit | tail -5` unless -e "$audit/state";
write_conf('zone=64k flush=200ms');
ok($ngx->start, 'nginx starts again, a tiny ring')
    or diag $ngx->start_error;
my @post;
for my $c (1 .. 4) {
    my $pid = fork // die;
    if ($pid == 0) {
        call("post-$c-$_", $keys{acme}, 'gpt-4o', 'x' x 2000) for 1 .. 50;
        POSIX::_exit(0);
    }
    push @post, $pid;
}
waitpid $_, 0 for @post;
my @burst = map { my $c = $_; map { "post-$c-$_" } 1 .. 50 } 1 .. 4;
$ids = wait_ids(\@burst);
is(scalar(grep { ($ids->{$_} // 0) != 1 } @burst), 0,
   'a burst larger than the ring: every record once')
    or diag join ' ', map { "$_=" . ($ids->{$_} // 0) }
                      grep { ($ids->{$_} // 0) != 1 } @burst;
$ngx->stop;
unlike($ngx->error_log, qr/records lost/, 'none lost');

like($ngx->error_log, qr/torn tail of 28 bytes/, 'the torn tail is found');
my @torn = grep { /"type":"torn"/ } records();
is(scalar @torn, 1, 'and marked by a record');
like(`$cli verify $audit --key $dir/sign.pub --trusted $dir/trusted 2>&1`,
     qr/^good: .*consistent with trusted/,
     'verify: good, consistent with the first checkpoint');
system("cp $audit/checkpoint $dir/trusted");

# retention: whole leading segments, said in the log
write_conf('keep=2 segment=1m');
ok($ngx->start, 'nginx starts again, keep=2') or diag $ngx->start_error;
call("ret-$_", $keys{acme}, 'gpt-4o') for 1 .. 5;
wait_ids([map { "ret-$_" } 1 .. 5]);
$ngx->stop;

like($ngx->error_log, qr/audit retention drops segment 000001/,
     'retention says what it drops');
ok(!-e "$audit/audit-000001.log", 'whole leading segments dropped');
like(`$cli verify $audit --key $dir/sign.pub --trusted $dir/trusted 2>&1`,
     qr/^good: .*leaves before \d+ dropped.*consistent with trusted/,
     'verify: good after retention, consistent with the old checkpoint');

# --- tampering: every kind is found -----------------------------------------

sub tamper {
    my ($name, $edit, $re, @opt) = @_;
    (my $t = "t-$name") =~ s/\W+/-/g;
    $t = "$dir/$t";
    system("rm -rf $t; cp -a $audit $t");
    $edit->($t);
    my $out = `$cli verify $t --key $dir/sign.pub @opt 2>&1`;
    ok($? >> 8 == 1 && $out =~ $re, "$name is detected") or diag $out;
}

sub edit_file {
    my ($f, $code) = @_;
    local $/;
    open my $in, '<:raw', $f or die "$f: $!";
    my $d = <$in>;
    close $in;
    $d = $code->($d);
    open my $out, '>:raw', $f or die;
    print $out $d;
    close $out;
}

# edits in the oldest segment kept (full), cuts at the end of the last
my ($seg) = (sort glob "$audit/audit-*.log")[-1] =~ /audit-(\d+)\.log/;
my ($old) = (sort glob "$audit/audit-*.log")[0] =~ /audit-(\d+)\.log/;

tamper('an edited record', sub {
    edit_file("$_[0]/audit-$old.log", sub {
        $_[0] =~ s/"status":200/"status":201/; $_[0] });
}, qr/segment \d+ line \d+: the first record the index does not match/);

tamper('an edited record and index', sub {
    edit_file("$_[0]/audit-$old.log", sub {
        $_[0] =~ s/"status":200/"status":201/; $_[0] });
    unlink "$_[0]/audit-$seg.idx";
}, qr/root of the first \d+ records is not the checkpoint's/);

tamper('a deleted record', sub {
    edit_file("$_[0]/audit-$old.log", sub { $_[0] =~ s/\A[^\n]*\n//; $_[0] });
}, qr/line 1: the first record the index does not match/);

tamper('two records swapped', sub {
    edit_file("$_[0]/audit-$old.log", sub {
        $_[0] =~ s/\A([^\n]*\n)([^\n]*\n)/$2$1/; $_[0] });
}, qr/line 1: the first record the index does not match/);

tamper('a truncated log', sub {
    edit_file("$_[0]/audit-$seg.log", sub {
        $_[0] =~ s/[^\n]*\n\z//; $_[0] });
}, qr/records \d+ and later are missing/);

tamper('a torn last line', sub {
    edit_file("$_[0]/audit-$seg.log", sub { substr($_[0], 0, -5) });
}, qr/torn last line/);

tamper('a removed segment', sub { unlink "$_[0]/audit-$seg.log" },
       qr/records \d+ and later are missing|segments are missing|no segment/);

tamper('a forged signature', sub {
    edit_file("$_[0]/checkpoint", sub {
        $_[0] =~ s/(\x{e2}\x{80}\x{94}\ \S+\ .{10})(.)/
                   $1 . ($2 eq 'A' ? 'B' : 'A')/sex;
        $_[0] });
}, qr/signature is not valid/);

tamper('a checkpoint by another key', sub { },
       qr/no signature by this key/, "--key $dir/other.pub");

tamper('a rewritten history', sub {
    # every record of the last segment edited and the checkpoint re-made:
    # the trusted checkpoint still catches an earlier change
    edit_file("$_[0]/audit-$seg.log", sub {
        $_[0] =~ s/"status":200/"status":201/; $_[0] });
    unlink "$_[0]/audit-$seg.idx";
}, qr/not consistent with the trusted checkpoint|not the checkpoint's/,
   "--trusted $dir/trusted");

done_testing();
