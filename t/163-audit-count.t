# The audit log under load: 100,000 requests of every outcome (answered,
# streamed, 401, 403, blocked by PII, 404, a provider's 500, 429, a cache
# hit; then a few timeouts and clients gone mid-stream) from pipelining
# keep-alive clients give exactly as many records, none twice, each with
# the status its client got; the log verifies.  Under ASan 25,000 (the
# sanitizer is some four times slower; AIGW_AUDIT_COUNT overrides both).
# Plain Test::More: two workers, its own clients.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;
use AigwNginx;

use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $asan = ($ENV{TEST_NGINX_BINARY} // '') =~ /asan/;
my $total = $ENV{AIGW_AUDIT_COUNT} || ($asan ? 25_000 : 100_000);
my $clients = 4;
my $window = 16;            # requests in flight on a connection
my $per = int($total / $clients);
$total = $per * $clients;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $cli = 'scripts/aigw-audit';
my $audit = "$dir/audit";
mkdir $audit or die;
chmod 0755, $dir;

my %keys = (acme => 'sk-aigw-count-acme', lim => 'sk-aigw-count-limited',
            off => 'sk-aigw-count-disabled');

$ngx->write_file('conf/keys.json',
    sprintf('[{"id":"key_acme","hash":"%s","tenant":"acme"},'
            . '{"id":"key_lim","hash":"%s","tenant":"globex",'
            . '"limits":{"rpm":50}},'
            . '{"id":"key_off","hash":"%s","tenant":"acme",'
            . '"disabled":true}]',
            sha256_hex($keys{acme}), sha256_hex($keys{lim}),
            sha256_hex($keys{off})));
$ngx->write_file('conf/provider.key', 'sk-provider-count');

system("openssl genpkey -algorithm ed25519 -out $dir/conf/sign.pem "
       . "2>/dev/null") == 0 or BAIL_OUT('openssl genpkey');
system("openssl pkey -in $dir/conf/sign.pem -pubout -out $dir/sign.pub")
    == 0 or BAIL_OUT('openssl pkey');

$ngx->write_conf(<<"EOC");
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log notice;
pid $dir/logs/nginx.pid;
events { worker_connections 512; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    aigw_keys keys.json;
    aigw_audit $audit sign_key=sign.pem origin=count.example/aigw
               segment=16m;
    aigw_quota_zone quota:1m;
    aigw_cache_zone cache:4m;
    aigw_provider ok http://127.0.0.1:$mock/v1 key_file=provider.key;
    aigw_provider s500 http://127.0.0.1:$mock/fault/status=500/v1
                  key_file=provider.key;
    aigw_provider hang http://127.0.0.1:$mock/fault/hang/v1
                  key_file=provider.key;
    aigw_provider slow http://127.0.0.1:$mock/fault/pace=40,words=40/v1
                  key_file=provider.key;
    aigw_model gpt-4o ok:gpt-4o input=2.50 output=10.00;
    aigw_model bad s500:gpt-4o;
    aigw_model stuck hang:gpt-4o;
    aigw_model paced slow:gpt-4o;
    server {
        listen 127.0.0.1:$port;
        location /cache/v1/ {
            aigw_cache on;
            aigw_pass;
        }
        location /slow/v1/ {
            aigw_read_timeout 10s;
            aigw_pass;
        }
        location /stuck/v1/ {
            aigw_read_timeout 300ms;
            aigw_pass;
        }
        location /v1/ {
            aigw_pii block email;
            aigw_limit key rpm=1000000;
            aigw_pass;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts with aigw_audit') or diag $ngx->start_error;

sub body {
    my ($model, $text, $stream) = @_;
    return qq({"model":"$model","stream":) . ($stream ? 'true' : 'false')
         . qq(,"messages":[{"role":"user","content":"$text"}]});
}

# the kinds, by turns: [path, key, model, text, stream]
my @kinds = (
    [ '/v1/', $keys{acme}, 'gpt-4o', 'hello', 0 ],          # answered
    [ '/v1/', $keys{acme}, 'gpt-4o', 'streamed', 1 ],       # a stream
    [ '/v1/', 'sk-aigw-count-wrong', 'gpt-4o', 'hello', 0 ], # 401
    [ '/v1/', $keys{off}, 'gpt-4o', 'hello', 0 ],           # 403
    [ '/v1/', $keys{acme}, 'gpt-4o', 'mail bob@example.com', 0 ], # 400
    [ '/v1/', $keys{acme}, 'nope', 'hello', 0 ],            # 404
    [ '/v1/', $keys{acme}, 'bad', 'hello', 0 ],             # 500
    [ '/v1/', $keys{lim}, 'gpt-4o', 'hello', 0 ],           # 200, 429
    [ '/cache/v1/', $keys{acme}, 'gpt-4o', 'cached', 0 ],   # a hit
);

sub request {
    my ($id, $k) = @_;
    my $b = body(@$k[2 .. 4]);
    return "POST $k->[0]chat/completions HTTP/1.1\r\nHost: localhost\r\n"
         . "X-Request-Id: $id\r\nAuthorization: Bearer $k->[1]\r\n"
         . "Content-Length: " . length($b) . "\r\n\r\n$b";
}

# one whole response at the start of $$buf: its status, and it is
# taken off; undef while it is not all there
sub response {
    my ($buf) = @_;
    my $h = index $$buf, "\r\n\r\n";
    return undef if $h < 0;
    my $head = substr $$buf, 0, $h;
    my ($status) = $head =~ m{\AHTTP/1\.1 (\d{3})} or die "bad: $head\n";
    my $pos = $h + 4;
    if ($head =~ /^content-length:\s*(\d+)/mi) {
        return undef if length($$buf) < $pos + $1;
        substr($$buf, 0, $pos + $1) = '';
        return $status;
    }
    die "neither length nor chunked: $head\n"
        unless $head =~ /^transfer-encoding:\s*chunked/mi;
    for (;;) {
        my $e = index $$buf, "\r\n", $pos;
        return undef if $e < 0;
        my $size = hex substr $$buf, $pos, $e - $pos;
        return undef if length($$buf) < $e + 2 + $size + 2;
        $pos = $e + 2 + $size + 2;
        if ($size == 0) {
            substr($$buf, 0, $pos) = '';
            return $status;
        }
    }
}

# a client: $per requests on a keep-alive connection, $window at a time;
# each id and the status it got, to the file.  nginx closes the
# connection after a 400 or a 500 (ngx_http_special_response_handler):
# the requests pipelined behind it were never read, and go again on a
# new connection.
sub client {
    my ($c, $wr) = @_;
    my ($s, $sel);
    my ($sent, $got, $buf, $out, $conns) = (0, 0, '', '', 0);
    my @pending;                 # [id, request] sent, not answered
    while ($got < $per) {
        if (!$s) {
            $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                       Timeout => 10)
                or die "client $c: connect: $!\n";
            binmode $s;
            $sel = IO::Select->new($s);
            $buf = '';
            $out = join '', map { $_->[1] } @pending;
            $conns++;
        }
        while ($sent < $per && @pending < $window) {
            my $id = "n$c-$sent";
            my $req = request($id, $kinds[($sent + $c) % @kinds]);
            push @pending, [$id, $req];
            $out .= $req;
            $sent++;
        }
        while (length $out) {
            my $n = syswrite $s, $out;
            last unless defined $n;      # closed: seen by the read
            substr($out, 0, $n) = '';
        }
        while (defined(my $status = response(\$buf))) {
            print $wr shift(@pending)->[0], " $status\n";
            $got++;
        }
        next if $got >= $per;
        # a busy machine: a minute before a stall is a failure
        $sel->can_read(60) or die "client $c: no answer in 60 s\n";
        my $n = sysread $s, $buf, 65536, length $buf;
        next if $n;
        while (defined(my $status = response(\$buf))) {
            print $wr shift(@pending)->[0], " $status\n";
            $got++;
        }
        close $s;
        undef $s;
        $out = '';
        die "client $c: more than $per connections\n" if $conns > $per;
    }
    close $s if $s;
}

my $t0 = time;
my @pids;
my $tmp = "$dir/statuses";
for my $c (1 .. $clients) {
    my $pid = fork // die;
    if ($pid == 0) {
        open my $wr, '>', "$tmp.$c" or die;
        my $ok = eval { client($c, $wr); 1 };
        print STDERR $@ unless $ok;
        close $wr;
        POSIX::_exit($ok ? 0 : 1);
    }
    push @pids, $pid;
}

my $failed = 0;
for (@pids) {
    waitpid $_, 0;
    $failed++ if $?;
}
is($failed, 0, "$clients clients, $per requests each, pipelined");

my %expect;
for my $c (1 .. $clients) {
    open my $fh, '<', "$tmp.$c" or die;
    while (<$fh>) {
        my ($id, $status) = split;
        $expect{$id} = $status;
    }
}
is(scalar keys %expect, $total, "$total answers");
diag sprintf '%d requests in %.1f s', $total, time - $t0;

# a few slow kinds: provider timeouts (504), clients gone mid-stream (499)
for my $i (1 .. 3) {
    my $r = $ngx->request('POST', '/stuck/v1/chat/completions',
                          { 'X-Request-Id' => "stuck-$i",
                            Authorization => "Bearer $keys{acme}" },
                          body('stuck', 'hello', 0));
    $expect{"stuck-$i"} = $r->{status};
}
for my $i (1 .. 3) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 10) or die;
    my $b = body('paced', 'bye', 1);
    print $s "POST /slow/v1/chat/completions HTTP/1.0\r\nHost: localhost\r\n"
           . "X-Request-Id: gone-$i\r\nAuthorization: Bearer $keys{acme}\r\n"
           . "Content-Length: " . length($b) . "\r\n\r\n$b";
    my $got = '';
    while ($got !~ /data:/) {
        my $n = sysread $s, $got, 4096, length $got;
        last unless $n;
    }
    close $s;
    $expect{"gone-$i"} = 499;
}
$total += 6;

# every record there (a bounded wait: the writer may still be at it)
my (%rec, $lines);
my $deadline = time + 120;
for (;;) {
    %rec = ();
    $lines = 0;
    for my $f (sort glob "$audit/audit-*.log") {
        open my $fh, '<', $f or next;
        while (my $l = <$fh>) {
            $lines++;
            my ($id) = $l =~ /"id":"([^"]+)"/ or next;
            my ($o, $st) = $l =~ /"outcome":"([^"]+)","status":(\d+)/;
            push @{ $rec{$id} }, [$o, $st, $l =~ /"cache":"HIT"/ ? 1 : 0];
        }
    }
    last if $lines >= $total || time > $deadline;
    sleep 0.5;
}

is($lines, $total, "exactly $total records");
my @missing = grep { !$rec{$_} } sort keys %expect;
my @dup = grep { @{ $rec{$_} } > 1 } sort keys %rec;
is(scalar @missing, 0, 'a record for every request')
    or diag "@missing[0 .. ($#missing < 9 ? $#missing : 9)]";
is(scalar @dup, 0, 'no record twice')
    or diag "@dup[0 .. ($#dup < 9 ? $#dup : 9)]";
my @wrong = grep { $rec{$_} && $rec{$_}[0][1] != $expect{$_} }
            sort keys %expect;
is(scalar @wrong, 0, 'each record has the status its client got')
    or diag join "\n", map { "$_: got $expect{$_}, record $rec{$_}[0][1]" }
                       @wrong[0 .. ($#wrong < 5 ? $#wrong : 5)];

my %outcomes;
for my $r (values %rec) {
    $outcomes{ $r->[0][0] }++;
    $outcomes{cache_hit}++ if $r->[0][2];
}
for my $o (qw(answered denied blocked refused provider_error rate_limited
              timeout client_gone cache_hit))
{
    ok($outcomes{$o}, "outcome $o: " . ($outcomes{$o} // 0));
}

$ngx->stop;

unlike($ngx->error_log, qr/records lost|\[alert\]/, 'no record lost')
    or diag grep { /alert|lost/ } split /^/m, $ngx->error_log;
like(`$cli verify $audit --key $dir/sign.pub 2>&1`,
     qr/^good: $total records/, 'the log verifies');

done_testing();
