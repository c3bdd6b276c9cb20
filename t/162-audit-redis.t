# The audit log shipped to Redis Streams (aigw_audit ... redis=on), with a
# real redis-server: every record in its tenant's stream once, byte for
# byte; a hung Redis and a Redis restarted empty, with requests meanwhile:
# the segments are the spool, nothing lost, nothing twice; verify against
# Redis finds an edited, a deleted and a reordered entry; query by tenant
# and time; no secret in Redis.  Plain Test::More: two workers, Redis
# stopped and started under them.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwFixture;

use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
use Time::HiRes qw(sleep time);

my $ngx = suite_nginx();
my $dir = $ngx->dir;
my $port = $ngx->port;
my $redis = suite_redis(password => 'ship-redis-pass');
my $rport = $redis->port;
my $mock = mock_port();

my $cli = 'scripts/aigw-audit';
my $audit = audit_setup($ngx);

my $canary = 'CANARY-9d2c-shipped-prompt';
my %keys = (acme => 'sk-aigw-ship-acme', globex => 'sk-aigw-ship-globex');

$ngx->write_keys(
    { id => 'key_acme', tenant => 'acme', user => 'alice',
      key => $keys{acme} },
    { id => 'key_globex', tenant => 'globex', key => $keys{globex} });
$ngx->write_file('conf/provider.key', 'sk-provider-ship');
my $hkey = 'ship-hmac-key-0123456789abcdef';
$ngx->write_file('conf/hmac.key', "$hkey\n");

$ngx->write_http(<<"EOC", workers => 2);
    aigw_keys keys.json;
    aigw_audit $audit sign_key=sign.pem origin=ship.example/aigw
               segment=16k flush=50ms redis=on hmac_key=hmac.key;
    aigw_redis 127.0.0.1:$rport password=ship-redis-pass timeout=1s;
    aigw_provider ok http://127.0.0.1:$mock/v1 key_file=provider.key;
    aigw_provider s500 http://127.0.0.1:$mock/fault/status=500/v1
                  key_file=provider.key;
    aigw_model gpt-4o ok:gpt-4o;
    include "models.conf"; # include not-this.conf;
    include extra.d/*.conf;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pii block email;
            aigw_pass;
        }
    }
EOC

# the configuration hash covers the files included, in nginx's order
mkdir "$dir/conf/extra.d" or die;
$ngx->write_file('conf/models.conf', "aigw_model bad s500:gpt-4o;\n");
$ngx->write_file('conf/extra.d/b.conf', "aigw_model b ok:gpt-4o;\n");
$ngx->write_file('conf/extra.d/a.conf',
                 "aigw_model a ok:gpt-4o; # include nothing.conf;\n");

sub config_hash {
    my $h = Digest::SHA->new(256);
    for my $f (qw(nginx.conf models.conf extra.d/a.conf extra.d/b.conf)) {
        my $text = do { local (@ARGV, $/) = "$dir/conf/$f"; <> };
        $h->add("$dir/conf/$f\0" . length($text) . "\0$text");
    }
    return substr $h->hexdigest, 0, 32;
}

ok($ngx->start, 'nginx starts, audit shipped to Redis')
    or diag $ngx->start_error;

my $n = 0;

# a request of a kind, by turns: answered, streamed, 401, 400, 500
sub call {
    my ($id) = @_;
    my @k = (
        [ $keys{acme}, 'gpt-4o', 'hello', 0 ],
        [ $keys{globex}, 'gpt-4o', 'streamed', 1 ],
        [ 'sk-aigw-ship-wrong', 'gpt-4o', 'hello', 0 ],
        [ $keys{acme}, 'gpt-4o', 'mail bob@example.com', 0 ],
        [ $keys{globex}, 'bad', 'hello', 0 ],
    );
    my ($key, $model, $text, $stream) = @{ $k[$n++ % @k] };
    my $body = qq({"model":"$model","stream":)
             . ($stream ? 'true' : 'false')
             . qq(,"messages":[{"role":"user","content":"$text $canary"}]});
    return $ngx->request('POST', '/v1/chat/completions',
                         { 'X-Request-Id' => $id,
                           Authorization => "Bearer $key" }, $body);
}

sub records {
    my @r;
    for my $f (sort glob "$audit/audit-*.log") {
        open my $fh, '<', $f or next;
        push @r, <$fh>;
    }
    chomp @r;
    return @r;
}

# one command through AigwRedis (AUTH first); the reply's first value
sub rget {
    my $raw = $redis->cmd(@_) // return undef;
    return $1 if $raw =~ /^[:+](.*)\r\n/;
    return $1 if $raw =~ /^\$\d+\r\n(.*?)\r\n/s;
    return undef;
}

my $prefix = 'aigw:audit:ship.example/aigw:';

# Redis holds as many records as the folder (bounded wait)
sub wait_shipped {
    my ($want, $timeout) = @_;
    my $deadline = time + ($timeout // 30);
    my $have;
    while (time < $deadline) {
        $have = rget('GET', "${prefix}size") // 0;
        return $have if $have == $want;
        sleep 0.1;
    }
    return $have;
}

sub wait_records {
    my ($want, $timeout) = @_;
    my $deadline = time + ($timeout // 20);
    my $c;
    while (time < $deadline) {
        $c = () = records();
        return $c if $c >= $want;
        sleep 0.1;
    }
    return $c;
}

my @verify = ($cli, 'verify', '--redis', "127.0.0.1:$rport",
              '--password', 'ship-redis-pass', '--key', "$dir/sign.pub");

sub verify_out {
    my $pid = open my $fh, '-|';
    die unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec @verify;
    }
    local $/;
    my $out = <$fh>;
    close $fh;
    return ($? >> 8, $out);
}

# --- shipping ---------------------------------------------------------------

my %answer;
$answer{"ship-$_"} = call("ship-$_")->{body} for 1 .. 40;
is(wait_records(40), 40, '40 records on disk');
is(wait_shipped(40), 40, 'and 40 in Redis');

my ($rc, $out) = verify_out();
is($rc, 0, 'verify --redis: good');
like($out, qr/^good: 40 records in Redis in 3 tenant streams, checkpoint 40/,
     '... every record under the signed checkpoint') or diag $out;

# the streams hold the lines byte for byte
my %disk = map { /"id":"([^"]+)"/ ? ($1 => $_) : () } records();
my $q = "$cli query --redis 127.0.0.1:$rport --password ship-redis-pass";
my @acme = `$q --tenant acme`;
chomp @acme;
my @local = `$cli query $audit --tenant acme`;
is(scalar @acme, scalar @local, 'query --redis: as many as the folder has')
    or diag "@acme[0 .. 2]";
my @diff = grep { !/"id":"([^"]+)"/ || $disk{$1} ne $_ } @acme;
is(scalar @diff, 0, 'each line byte for byte as on disk');
is(`$q --tenant globex --count`,
   "16\n", 'query --redis by tenant: count');
is(`$q --tenant acme --from 2999-01-01 --count`,
   "0\n", 'query --redis by time: none in the future');
my ($ts) = $acme[3] =~ /"ts":(\d+)/;
my @from = `$q --tenant acme --from $ts`;
my $want = grep { /"ts":(\d+)/ && $1 >= $ts } @acme;
is(scalar @from, $want, 'query --redis --from: the later ones');

my $ch = config_hash();
is(scalar(grep { !/"config":"$ch"/ } values %disk), 0,
   'config: the hash of the main file and the files it includes');

# the answer's HMAC: of the body as the client got it, JSON and streams
my @hm = grep { /"answer_hmac":"([0-9a-f]{64})"/ } values %disk;
is(scalar @hm, 40, 'every record has the answer\'s HMAC');
my @wrong = grep {
    my ($id) = /"id":"([^"]+)"/;
    my ($mac) = /"answer_hmac":"([0-9a-f]{64})"/;
    hmac_sha256_hex($answer{$id}, $hkey) ne $mac
} @hm;
is(scalar @wrong, 0, 'each one the HMAC of the answer sent')
    or diag "$wrong[0]\n", $answer{($wrong[0] =~ /"id":"([^"]+)"/)[0]};
ok(scalar(grep { /"status":200,.*"stream":true/ } @hm) >= 8,
   '... streams among them');

# --- Redis hung, then back --------------------------------------------------

$redis->pause;
call("hung-$_") for 1 .. 30;
is(wait_records(70), 70, 'Redis hung: records still on disk');
# the shipper's command times out (aigw_redis timeout=1s): said so
my $deadline = time + 30;
sleep 0.1 until $ngx->error_log =~ /records not shipped to Redis/
                || time > $deadline;
like($ngx->error_log,
     qr/audit records not shipped to Redis \(no answer\): kept on disk/,
     'a hung Redis: the batch is kept on disk');
$redis->resume;
is(wait_shipped(70), 70, 'Redis back: the spool catches up, 70 in Redis');

# --- Redis restarted empty: everything shipped again from the segments ------

$redis->stop;
call("down-$_") for 1 .. 30;
is(wait_records(100), 100, 'Redis down: 100 records on disk');
ok($redis->start, 'Redis up again, empty');
is(wait_shipped(100), 100, 'the segments shipped again: 100 in Redis');
like($ngx->error_log, qr/Redis holds 0 audit records/,
     'the error log says Redis had lost them');

($rc, $out) = verify_out();
is($rc, 0, 'verify --redis after the outages: good') or diag $out;
like($out, qr/^good: 100 records/, '... no record lost, none twice');

# a checkpoint kept from the start is consistent with Redis now
system("cp $audit/checkpoint $dir/trusted") == 0 or die;
call("late-$_") for 1 .. 5;
is(wait_shipped(105), 105, '5 more shipped');
my @t = (@verify, '--trusted', "$dir/trusted");
like(`@t 2>&1`, qr/^good: 105 records.*consistent with trusted checkpoint/,
     'verify --redis --trusted: the old checkpoint is a prefix');

# a reload: the new workers ship on from the cursor in the zone
my $old = $ngx->workers;
$ngx->signal('HUP');
ok($ngx->reloaded($old, 20), 'reloaded');
call("reload-$_") for 1 .. 5;
is(wait_records(110), 110, '110 records on disk');
is(wait_shipped(110), 110, 'and 110 in Redis, none twice');

my $len = rget('XLEN', "${prefix}tenant:acme");
my $disk_acme = () = `$cli query $audit --tenant acme`;
is($len, $disk_acme, 'the acme stream: as many entries as the folder');

# --- secrets: none in Redis -------------------------------------------------

my $all = $redis->cmd('EVAL', <<'EOL', 0) // '';
local out = {}
for _, k in ipairs(redis.call('KEYS', 'aigw:audit:*')) do
  local t = redis.call('TYPE', k)['ok']
  if t == 'stream' then
    for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do
      for _, v in ipairs(e[2]) do out[#out + 1] = v end
    end
  elseif t == 'string' then out[#out + 1] = redis.call('GET', k)
  elseif t == 'set' then
    for _, v in ipairs(redis.call('SMEMBERS', k)) do out[#out + 1] = v end
  end
end
return table.concat(out, '\n')
EOL
ok(length $all > 1000, 'Redis holds the records') or diag $all;
for my $s (values %keys, 'sk-aigw-ship-wrong', 'sk-provider-ship',
           'ship-redis-pass', $canary, 'bob@example.com')
{
    ok(index($all, $s) < 0, "\"$s\" is not in Redis");
}
if ($ENV{AIGW_SECRETS_DIR}) {
    open my $fh, '>', "$ENV{AIGW_SECRETS_DIR}/logs.redis.$$" or die;
    print $fh $all;
}

# --- tampering in Redis: each kind found ------------------------------------

$ngx->stop;

my $key = "${prefix}tenant:acme";
is(rget('COPY', $key, "$key.kept"), 1, 'the acme stream kept aside');

# the stream rebuilt with the same IDs, entries changed by a Lua function
sub rebuild {
    my ($lua) = @_;
    rget('DEL', $key);
    rget('COPY', "$key.kept", $key);
    return $redis->cmd('EVAL', <<"EOL", 1, $key);
local e = redis.call('XRANGE', KEYS[1], '-', '+')
redis.call('DEL', KEYS[1])
$lua
for i, x in ipairs(e) do
  if x then redis.call('XADD', KEYS[1], x[1], unpack(x[2])) end
end
return #e
EOL
}

sub field_set {
    return <<'EOL';
local function set(f, name, v)
  for i = 1, #f, 2 do if f[i] == name then f[i + 1] = v end end
end
local function get(f, name)
  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end
end
EOL
}

rebuild(field_set() . <<'EOL');
local f = e[5][2]
set(f, 'line', string.gsub(get(f, 'line'), '"status":200', '"status":201'))
EOL
($rc, $out) = verify_out();
is($rc, 1, 'an edited entry: bad');
my $named = 'the first record that does not match its hash';
like($out, qr/BAD: seq \d+ \(tenant "acme" entry .*\): \Q$named\E/,
     '... and named') or diag $out;

# an edit with its hash made to match: only the root can tell
rebuild(field_set() . <<'EOL');
local f = e[5][2]
set(f, 'line', string.gsub(get(f, 'line'), '"status":200', '"status":201'))
set(f, 'hash', string.sub(redis.sha1hex('x'), 1, 16))
EOL
($rc, $out) = verify_out();
is($rc, 1, 'an edited entry with a forged hash: bad') or diag $out;

rebuild("e[6] = false\n");
($rc, $out) = verify_out();
is($rc, 1, 'a deleted entry: bad');
like($out, qr/BAD: seq \d+: missing \(deleted\)/, '... and named')
    or diag $out;

rebuild(field_set() . <<'EOL');
local a, b = e[3][2], e[4][2]
e[3][2], e[4][2] = b, a
EOL
($rc, $out) = verify_out();
is($rc, 1, 'a reordered pair of entries: bad');
like($out, qr/the stream is reordered/, '... and named') or diag $out;

rebuild('');
($rc, $out) = verify_out();
is($rc, 0, 'the stream as it was: good') or diag $out;

my $cp = rget('GET', "${prefix}checkpoint");
$cp =~ s/\n(\d+)\n/"\n" . ($1 - 1) . "\n"/e;
rget('SET', "${prefix}checkpoint", $cp);
($rc, $out) = verify_out();
is($rc, 1, 'an edited checkpoint: bad');
like($out, qr/signature is not valid/, '... its signature') or diag $out;

unlike($ngx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert in the log')
    or diag grep { /\[(alert|crit|emerg)\]/ } split /^/m, $ngx->error_log;

done_testing();
