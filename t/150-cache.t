# The exact cache: keyed on the canonical body (reordered keys, numbers
# written otherwise and a content string equal to one text block hit;
# any change of parameter, tool, system or message misses; user and
# stream do not count), scoped by tenant, complete 200 answers only
# (never a cut stream, an error or an error event), replayed as they
# were with the stored usage, metered at no cost, controlled by
# Cache-Control and aigw_cache_bypass; a full zone evicts.  Plain
# Test::More: many requests against one nginx, whose zone must last.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;
use AigwNginx;

use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use Time::HiRes qw(sleep time);

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

my @keys = (
    { id => 'k_cache_a', tenant => 'acme' },
    { id => 'k_cache_a2', tenant => 'acme' },
    { id => 'k_cache_b', tenant => 'globex' },
    { id => 'k_cache_rpm', tenant => 'limited', limits => { rpm => 3 } },
);

for my $k (@keys) {
    $k->{hash} = sha256_hex("sk-$k->{id}");
}

$ngx->write_file('conf/keys.json', JSON::PP->new->encode({ keys => \@keys }));

$ngx->write_conf(<<"EOC");
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 256; }
http {
    client_body_temp_path $dir/body;
    log_format c '\$aigw_key_id \$aigw_cache_status a=\$aigw_attempts '
                 'p=\$aigw_prompt_tokens c=\$aigw_completion_tokens '
                 'cost=\$aigw_cost';
    access_log $dir/logs/cache.log c;
    aigw_keys keys.json;
    aigw_cache_zone cache:1m;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider cut http://127.0.0.1:$mock/fault/cut=2/v1;
    aigw_provider bad http://127.0.0.1:$mock/fault/status=400/v1;
    aigw_provider everr http://127.0.0.1:$mock/fault/stream_error=1/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model m ok:gpt-4o input=2.50 output=10.00;
    aigw_model m2 ok:gpt-4o;
    aigw_model cut cut:gpt-4o;
    aigw_model bad bad:gpt-4o;
    aigw_model everr everr:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_cache on;
            aigw_cache_bypass \$http_x_no_cache;
            aigw_pass;
        }
        location /short/v1/ {
            aigw_cache on;
            aigw_cache_ttl 1s;
            aigw_pass;
        }
        location /global/v1/ {
            aigw_cache on;
            aigw_cache_scope global;
            aigw_cache_namespace \$http_x_ns;
            aigw_pass;
        }
        location /off/v1/ {
            aigw_pass;
        }
        location /tpl/v1/ {
            aigw_cache on;
            aigw_cache_template weather 1
                "(?i)^ *what is the weather in +(?<city>[^?]+?) *[?] *\$";
            aigw_cache_template greet 2 "^hello (?<name>.+)\$";
            aigw_pass;
        }
        location = /metrics {
            aigw_metrics;
        }
        location = /cache/purge {
            aigw_cache_purge;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

sub post {
    my ($body, %o) = @_;
    my %h = (Authorization => 'Bearer sk-' . ($o{key} || 'k_cache_a'),
             %{ $o{headers} || {} });
    return $ngx->request('POST', ($o{prefix} || '') . ($o{path}
                         || '/v1/chat/completions'), \%h, $body);
}

sub hdr {
    my ($res, $name) = @_;
    my ($v) = $res->{headers} =~ /^\Q$name\E:\s*(.*?)\r?$/mi;
    return $v;
}

sub cache { hdr($_[0], 'X-AIGW-Cache') // '' }

my $n = 0;

# a body of its own for each case, so that cases do not meet in the zone
sub chat {
    my (%o) = @_;
    my $text = $o{text} // 'question ' . ++$n;
    return '{"model":"' . ($o{model} || 'm') . '",'
           . ($o{extra} // '')
           . '"messages":[{"role":"user","content":"' . $text . '"}]}';
}

# a miss, then a hit: the same bytes, no provider

my $body = chat();
my $r1 = post($body);
my $r2 = post($body);

is($r1->{status}, 200, 'miss: 200');
is(cache($r1), 'MISS', 'X-AIGW-Cache: MISS');
is(hdr($r1, 'Age'), undef, 'no Age on a miss');
is($r2->{status}, 200, 'hit: 200');
is(cache($r2), 'HIT', 'X-AIGW-Cache: HIT');
like(hdr($r2, 'Age') // '', qr/^\d+$/, 'Age on a hit');
is($r2->{body}, $r1->{body}, 'the stored answer, byte for byte');
is(hdr($r2, 'Content-Type'), 'application/json', 'as JSON');
is(hdr($r2, 'Content-Length'), length $r1->{body}, 'with its length');
like(hdr($r2, 'X-Request-Id') // '', qr/\S/, 'a request id of its own');

# off where not configured

my $off = post($body, prefix => '/off');
is(cache($off), '', 'aigw_cache off: no X-AIGW-Cache');

# key correctness

sub same {
    my ($a, $b, $what, %o) = @_;
    my $x = post($a, %o);
    my $y = post($b, %o);
    is(cache($x), 'MISS', "$what: the first misses");
    is(cache($y), 'HIT', "$what: same key");
    is($y->{body}, $x->{body}, "$what: same answer") if cache($y) eq 'HIT';
}

sub differs {
    my ($a, $b, $what, %o) = @_;
    my $x = post($a, %o);
    my $y = post($b, %o);
    is(cache($x), 'MISS', "$what: the first misses");
    is(cache($y), 'MISS', "$what: another key");
}

$n++;
same(qq{{"model":"m","temperature":0.5,"max_tokens":20,"messages":[{"role":"user","content":"q$n"}]}},
     qq{{"messages":[{"content":"q$n","role":"user"}],"max_tokens":20,"temperature":0.5,"model":"m"}},
     'keys reordered');

$n++;
same(qq{{"model":"m","temperature":1,"messages":[{"role":"user","content":"q$n"}]}},
     qq{{"model":"m","temperature":1.0e0,"messages":[{"role":"user","content":"q$n"}]}},
     'numbers normalized');

$n++;
same(qq{{"model":"m","temperature":0.25,"messages":[{"role":"user","content":"q$n"}]}},
     qq{{"model":"m","temperature":25E-2,"messages":[{"role":"user","content":"q$n"}]}},
     'numbers normalized (exponent)');

$n++;
same(qq{{"model":"m","messages":[{"role":"user","content":"q$n"}]}},
     qq{{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"q$n"}]}]}},
     'a string content is one text block');

$n++;
same(qq{{"model":"m","messages":[{"role":"user","content":"q\\u0041$n"}]}},
     qq{{"model":"m","messages":[{"role":"user","content":"qA$n"}]}},
     'escapes unescaped');

$n++;
same(qq{{"model":"m","user":"alice","metadata":{"x":1},"messages":[{"role":"user","content":"q$n"}]}},
     qq{{"model":"m","user":"bob","messages":[{"role":"user","content":"q$n"}]}},
     'user and metadata do not count');

$n++;
same(qq{{"model":"m","stream":false,"messages":[{"role":"user","content":"q$n"}]}},
     qq{{"model":"m","messages":[{"role":"user","content":"q$n"}]}},
     'stream:false is no stream');

$n++;
differs(qq{{"model":"m","temperature":0.5,"messages":[{"role":"user","content":"q$n"}]}},
        qq{{"model":"m","temperature":0.6,"messages":[{"role":"user","content":"q$n"}]}},
        'a parameter changed');

$n++;
differs(qq{{"model":"m","messages":[{"role":"user","content":"q$n"}]}},
        qq{{"model":"m","messages":[{"role":"user","content":"q$n "}]}},
        'a message changed');

$n++;
differs(qq{{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"q$n"}]}},
        qq{{"model":"m","messages":[{"role":"system","content":"be long"},{"role":"user","content":"q$n"}]}},
        'the system prompt changed');

$n++;
differs(qq{{"model":"m","tools":[{"type":"function","function":{"name":"a"}}],"messages":[{"role":"user","content":"q$n"}]}},
        qq{{"model":"m","tools":[{"type":"function","function":{"name":"b"}}],"messages":[{"role":"user","content":"q$n"}]}},
        'a tool changed');

$n++;
differs(qq{{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b$n"}]}},
        qq{{"model":"m","messages":[{"role":"user","content":"b$n"},{"role":"user","content":"a"}]}},
        'messages reordered');

$n++;
differs(qq{{"model":"m","messages":[{"role":"user","content":"q$n"}]}},
        qq{{"model":"m2","messages":[{"role":"user","content":"q$n"}]}},
        'another model');

$n++;
differs(qq{{"model":"m","temperature":1,"messages":[{"role":"user","content":"q$n"}]}},
        qq{{"model":"m","temperature":"1","messages":[{"role":"user","content":"q$n"}]}},
        'a number is not a string');

# scope: a tenant never gets another's answer; a key of the same tenant
# does; a global scope shares, its namespace parts

$body = chat();
is(cache(post($body, key => 'k_cache_a')), 'MISS', 'tenant acme: miss');
is(cache(post($body, key => 'k_cache_b')), 'MISS',
   'tenant globex: no hit on acme\'s answer');
is(cache(post($body, key => 'k_cache_a2')), 'HIT',
   'another key of acme: hit');

$body = chat();
is(cache(post($body, key => 'k_cache_a', prefix => '/global')), 'MISS',
   'global scope: miss');
is(cache(post($body, key => 'k_cache_b', prefix => '/global')), 'HIT',
   'global scope: shared by tenants');
is(cache(post($body, key => 'k_cache_b', prefix => '/global',
              headers => { 'X-NS' => 'v2' })), 'MISS',
   'another namespace: miss');

# streams: stored whole, replayed as they came, usage chunk kept from a
# client that did not ask for it

$body = chat(extra => '"stream":true,');
my $s1 = post($body);
my $s2 = post($body);
is(cache($s1), 'MISS', 'stream: miss');
is(cache($s2), 'HIT', 'stream: hit');
like(hdr($s2, 'Content-Type') // '', qr{^text/event-stream}, 'as SSE');
is($s2->{body}, $s1->{body}, 'stream: the same events');
like($s2->{body}, qr/data: \[DONE\]\n\n\z/, 'ends with [DONE]');
unlike($s2->{body}, qr/"usage":\{/, 'no usage chunk: not asked for');

$n++;
my $u1 = post(qq{{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"q$n"}]}});
my $u2 = post(qq{{"model":"m","stream":true,"messages":[{"role":"user","content":"q$n"}]}});
my $u3 = post(qq{{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"q$n"}]}});
is(cache($u2), 'HIT', 'stream_options does not count');
unlike($u2->{body}, qr/"usage":\{/, 'usage chunk kept from who did not ask');
like($u3->{body}, qr/"usage":\{"prompt_tokens"/,
     'the stored usage for who asked');

# across modes: a stored JSON answer replayed as a stream, a stored
# stream as JSON, with the same text and usage (OpenAI's format)

sub sse_text {
    my ($body) = @_;
    my ($text, $usage, $done) = ('', undef, 0);
    for my $ev (split /\n\n/, $body) {
        my ($data) = $ev =~ /^data: (.*)$/m or return undef;
        if ($data eq '[DONE]') { $done = 1; next; }
        my $j = eval { JSON::PP->new->decode($data) } or return undef;
        $usage = $j->{usage} if $j->{usage};
        $text .= $_->{delta}{content} // '' for @{ $j->{choices} };
    }
    return $done ? { text => $text, usage => $usage } : undef;
}

$n++;
my $j = post(qq{{"model":"m","messages":[{"role":"user","content":"q$n"}]}});
my $st = post(qq{{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"q$n"}]}});
is(cache($st), 'HIT', 'stored JSON, a stream asked: hit');
like(hdr($st, 'Content-Type') // '', qr{^text/event-stream}, 'as SSE');
my $jd = JSON::PP->new->decode($j->{body});
my $sd = sse_text($st->{body});
ok($sd, 'the replay parses as SSE, [DONE] last');
is($sd->{text}, $jd->{choices}[0]{message}{content}, 'the same text');
is_deeply($sd->{usage}, $jd->{usage}, 'the stored usage');
my $st2 = post(qq{{"model":"m","stream":true,"messages":[{"role":"user","content":"q$n"}]}});
unlike($st2->{body}, qr/"usage":\{/, 'no usage chunk when not asked');

$n++;
$st = post(qq{{"model":"m","stream":true,"messages":[{"role":"user","content":"q$n"}]}});
$j = post(qq{{"model":"m","messages":[{"role":"user","content":"q$n"}]}});
is(cache($j), 'HIT', 'stored stream, JSON asked: hit');
is(hdr($j, 'Content-Type'), 'application/json', 'as JSON');
$jd = eval { JSON::PP->new->decode($j->{body}) };
ok($jd, 'the replay parses as JSON');
$sd = sse_text($st->{body});
is($jd->{choices}[0]{message}{content}, $sd->{text}, 'the same text');
is($jd->{object}, 'chat.completion', 'a chat.completion');
ok($jd->{usage} && $jd->{usage}{completion_tokens}, 'with the usage');

# the escapes of a stream's text stay escapes in the JSON

$n++;
$st = post(qq{{"model":"m","stream":true,"messages":[{"role":"user","content":"q\\"uote\\\\ $n \\u00e9"}]}});
$j = post(qq{{"model":"m","messages":[{"role":"user","content":"q\\"uote\\\\ $n \\u00e9"}]}});
is(cache($j), 'HIT', 'escapes: hit');
$jd = eval { JSON::PP->new->decode($j->{body}) };
is($jd && $jd->{choices}[0]{message}{content}, sse_text($st->{body})->{text},
   'escapes: the same text');

# Anthropic's format

my $m = '{"model":"haiku","max_tokens":16,'
        . '"messages":[{"role":"user","content":"anthropic ' . ++$n . '"}]}';
my $a1 = $ngx->request('POST', '/v1/messages',
                       { 'x-api-key' => 'sk-k_cache_a' }, $m);
my $a2 = $ngx->request('POST', '/v1/messages',
                       { 'x-api-key' => 'sk-k_cache_a' }, $m);
is(cache($a1) . ' ' . cache($a2), 'MISS HIT', 'anthropic: miss, hit');
is($a2->{body}, $a1->{body}, 'anthropic: the same answer');

$m =~ s/"max_tokens":16,/"max_tokens":16,"stream":true,/;
$a1 = $ngx->request('POST', '/v1/messages',
                    { 'x-api-key' => 'sk-k_cache_a' }, $m);
$a2 = $ngx->request('POST', '/v1/messages',
                    { 'x-api-key' => 'sk-k_cache_a' }, $m);
is(cache($a2), 'HIT', 'anthropic stream: hit');
like($a2->{body}, qr/event: message_stop/, 'anthropic stream: whole');
is($a2->{body}, $a1->{body}, 'anthropic stream: the same events');

# across modes in Anthropic's format: the stored stream as a message,
# a stored message as a stream

sub anthropic_text {
    my ($body) = @_;
    my ($text, $stop, $out) = ('', 0, undef);
    for my $ev (split /\n\n/, $body) {
        my ($data) = $ev =~ /^data: (.*)$/m or return undef;
        my $j = eval { JSON::PP->new->decode($data) } or return undef;
        $text .= $j->{delta}{text} // '' if $j->{type} eq 'content_block_delta';
        $out = $j->{usage}{output_tokens} if $j->{type} eq 'message_delta';
        $stop = 1 if $j->{type} eq 'message_stop';
    }
    return $stop ? { text => $text, output => $out } : undef;
}

my $sst = anthropic_text($a1->{body});
$m =~ s/"stream":true,//;
$a2 = $ngx->request('POST', '/v1/messages',
                    { 'x-api-key' => 'sk-k_cache_a' }, $m);
is(cache($a2), 'HIT', 'anthropic: a stored stream, JSON asked: hit');
my $am = eval { JSON::PP->new->decode($a2->{body}) };
is($am && $am->{content}[0]{text}, $sst->{text}, 'anthropic: the same text');
is($am && $am->{usage}{output_tokens}, $sst->{output},
   'anthropic: the stored usage');
is($am && $am->{type}, 'message', 'anthropic: a message');

$m =~ s/anthropic \d+/'anthropic ' . ++$n/e;
$a1 = $ngx->request('POST', '/v1/messages',
                    { 'x-api-key' => 'sk-k_cache_a' }, $m);
(my $ms = $m) =~ s/"max_tokens":16,/"max_tokens":16,"stream":true,/;
$a2 = $ngx->request('POST', '/v1/messages',
                    { 'x-api-key' => 'sk-k_cache_a' }, $ms);
is(cache($a2), 'HIT', 'anthropic: a stored message, a stream asked: hit');
my $as = anthropic_text($a2->{body});
$am = JSON::PP->new->decode($a1->{body});
is($as && $as->{text}, $am->{content}[0]{text},
   'anthropic: the stream has the same text');
is($as && $as->{output}, $am->{usage}{output_tokens},
   'anthropic: and the same output count');

# never stored: a cut stream, an error answer, a stream with an error

for my $case (['cut', 1, 'a cut stream'], ['bad', 0, 'a 400'],
              ['everr', 1, 'a stream with an error event'])
{
    my ($model, $stream, $what) = @$case;
    $body = chat(model => $model, extra => $stream ? '"stream":true,' : '');
    my $x = post($body);
    my $y = post($body);
    is(cache($x), 'MISS', "$what: miss");
    is(cache($y), 'MISS', "$what: not stored");
}

# controls

$body = chat();
post($body);
my $nc = post($body, headers => { 'Cache-Control' => 'no-cache' });
is(cache($nc), 'BYPASS', 'Cache-Control: no-cache skips the lookup');
is(cache(post($body)), 'HIT', 'and the entry stays');

$body = chat();
is(cache(post($body, headers => { 'Cache-Control' => 'no-store' })),
   'MISS', 'Cache-Control: no-store');
is(cache(post($body)), 'MISS', 'no-store: nothing stored');

$body = chat();
post($body);
is(cache(post($body, headers => { 'X-No-Cache' => '1' })), 'BYPASS',
   'aigw_cache_bypass');

# TTL: the entry is gone a second later

$body = chat();
my $t0 = time;
is(cache(post($body, prefix => '/short')), 'MISS', 'ttl 1s: miss');
my $hit = post($body, prefix => '/short');
is(cache($hit), 'HIT', 'ttl 1s: hit') if time - $t0 < 0.9;
sleep 0.1 while time - $t0 < 2.1;
is(cache(post($body, prefix => '/short')), 'EXPIRED', 'ttl 1s: expired');
is(cache(post($body, prefix => '/short')), 'HIT', 'stored again');

# a hit counts for request limits, costs nothing, uses no tokens

$body = chat();
my @q = map { post($body, key => 'k_cache_rpm') } 1 .. 4;
is_deeply([map { $_->{status} } @q], [200, 200, 200, 429],
          'a hit counts for requests per minute');

# templates: the variables, normalized, stand for the text

sub tpl { post(chat(text => $_[0], extra => $_[1] // ''), prefix => '/tpl') }

my $w1 = tpl('What is the weather in   Paris?');
is(cache($w1), 'MISS', 'template: the first misses');
my $w2 = tpl('what is the weather in PARIS ?');
is(cache($w2), 'TEMPLATE_HIT', 'template: case and white space do not count');
is($w2->{body}, $w1->{body}, 'template: the stored answer');
like(hdr($w2, 'Age') // '', qr/^\d+$/, 'template: Age');
is(cache(tpl('what is the weather in  new   york?')), 'MISS',
   'template: another city');
is(cache(tpl('what is the weather in New York ?')), 'TEMPLATE_HIT',
   'template: white space inside a variable collapsed');
is(cache(tpl('what is the weather in paris?', '"temperature":0,')), 'MISS',
   'template: other fields still count');
is(cache(tpl('hello World')) . ' ' . cache(tpl('hello world')),
   'MISS TEMPLATE_HIT', 'a second template');
is(cache(tpl('not a template ' . ++$n)) . ' '
   . cache(tpl('not a template ' . $n)), 'MISS HIT',
   'no template: the exact key');
is(cache(tpl('Not a template ' . $n)), 'MISS',
   'no template: case counts');

# a purge: the namespace's entries are gone, another's stay

$body = chat();
my $other = chat();
post($body);
post($other, prefix => '/global', headers => { 'X-NS' => 'keep' });
is(cache(post($body)), 'HIT', 'before the purge: hit');
my $pg = $ngx->request('POST', '/cache/purge', {}, '');
is($pg->{status}, 200, 'purge: 200');
is($pg->{body}, '{"namespace":"","generation":1}', 'the default namespace');
is(cache(post($body)), 'MISS', 'after the purge: miss');
is(cache(post($body)), 'HIT', 'stored again');
is(cache(post($other, prefix => '/global', headers => { 'X-NS' => 'keep' })),
   'HIT', 'another namespace is kept');
$pg = $ngx->request('DELETE', '/cache/purge?namespace=ke%65p', {}, '');
is($pg->{body}, '{"namespace":"keep","generation":1}',
   'purge by name, unescaped');
is(cache(post($other, prefix => '/global', headers => { 'X-NS' => 'keep' })),
   'MISS', 'that namespace purged');
is($ngx->request('GET', '/cache/purge')->{status}, 405, 'purge: GET is 405');

# metering and metrics

my $log = '';
for (1 .. 50) {
    open my $fh, '<', "$dir/logs/cache.log" or last;
    local $/;
    $log = <$fh>;
    last if ($log =~ tr/\n//) >= 2;
    sleep 0.1;
}

like($log, qr/^k_cache_a MISS a=1 p=\d+ c=\d+ cost=0\.0000\d\d$/m,
     'a miss: the provider\'s tokens and cost');
like($log, qr/^k_cache_a HIT a=0 p=0 c=0 cost=0\.000000$/m,
     'a hit: no attempt, no tokens, no cost');

my $mt = $ngx->request('GET', '/metrics');
like($mt->{body}, qr/^aigw_cache_lookups_total\{result="hit"\} [1-9]/m,
     'hits counted');
like($mt->{body}, qr/^aigw_cache_avoided_tokens_total [1-9]/m,
     'avoided tokens counted');
like($mt->{body}, qr/^aigw_cache_avoided_cost_microdollars_total [1-9]/m,
     'avoided cost counted');

# nothing went wrong in the error log

open my $el, '<', "$dir/logs/error.log" or die;
my @bad = grep { /\[(alert|crit|emerg)\]|AddressSanitizer|runtime error/ }
          <$el>;
is_deeply(\@bad, [], 'no alert, crit or sanitizer report');

done_testing();
