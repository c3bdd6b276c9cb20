# Translated streams: a long one (2,000 events) both ways, whole, in a
# request pool that does not grow with it (the debug line of the
# stream's end says what the pool holds); events larger than 16 KB
# with aigw_translate_buffer, and without it the end that says so; a
# key twice in an object the translation reads.  Plain Test::More, like
# t/097-translate.t.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use JSON::PP;
use Test::More;

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

# 2,000 events: 1,998 words one an event, the role's and the end's
my $long = "http://127.0.0.1:$mock/fault/words=1998,piece=1/v1";

# 40 words one an event, each event its own read at the gateway
my $paced = "http://127.0.0.1:$mock/fault/words=40,piece=1,pace=5/v1";

# events of 20,000 characters: larger than the 16 KB every stream has
my $big = "http://127.0.0.1:$mock/fault/words=6000,chars=20000/v1";

$ngx->write_conf(<<"EOC");
load_module $module;
master_process off;
daemon off;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/body;
    access_log off;
    aigw_provider claudelong $long format=anthropic;
    aigw_provider gptlong $long;
    aigw_provider claudebig $big format=anthropic;
    aigw_provider gptbig $big;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_provider claudepaced $paced format=anthropic;
    aigw_provider gptpaced $paced;
    aigw_model haiku-paced claudepaced:claude-3-5-haiku;
    aigw_model gpt-paced gptpaced:gpt-4o;
    aigw_model haiku-long claudelong:claude-3-5-haiku;
    aigw_model gpt-long gptlong:gpt-4o;
    aigw_model haiku-big claudebig:claude-3-5-haiku;
    aigw_model gpt-big gptbig:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
        location /long/v1/ {
            error_log $dir/logs/debug.log debug;
            aigw_pass;
        }
        location /big/v1/ {
            aigw_translate_buffer 64k;
            aigw_pass;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

my %anthropic = ('anthropic-version' => '2023-06-01');

sub chunks {
    my ($body) = @_;
    return map { /^data: (.*)$/s ? $1 : () } split /\n\n/, $body;
}

sub events {
    my ($body) = @_;
    return map { [ /^event: (\S+)\ndata: (.*)$/s ] } split /\n\n/, $body;
}

# the pool line of the last stream that ended, from the debug log: at
# least 2,000 events, and the request's pool, which holds the request,
# its body and the stream's few buffers, under 48 KB (a buffer an event
# would be 2,000 times more: 0.7 to 1.3 MB)
# (nginx writes debug lines only when built --with-debug: Debian's is,
# the 1.30 and 1.31 trees of the suite are not)
my $debug = `$ngx->{nginx} -V 2>&1` =~ /--with-debug/;

sub pool_ok {
    my ($what) = @_;
    SKIP: {
        skip "$what: nginx without --with-debug writes no pool line", 2
            unless $debug;
        my ($events, $pool);
        if (open my $fh, '<', "$dir/logs/debug.log") {
            my @l = grep { /translated stream of \d+ events/ } <$fh>;
            ($events, $pool) = $l[-1]
                =~ /of (\d+) events: the request's pool has (\d+) bytes/
                if @l;
        }
        ok($events && $events >= 2000, "$what: the stream's end is logged, "
           . ($events // 0) . ' events');
        cmp_ok($pool // 1e9, '<', 48 * 1024,
               "$what: the request's pool stays small: "
               . ($pool // 'none') . ' bytes');
    }
}

# --- a long stream, Anthropic's, to an OpenAI client ------------------

my $res = $ngx->request('POST', '/long/v1/chat/completions', {},
    '{"model":"haiku-long","stream":true,'
    . '"messages":[{"role":"user","content":"hello"}]}');
is($res->{status}, 200, 'a long stream from Anthropic: 200');
my @c = chunks($res->{body});
is($c[-1], '[DONE]', 'it ends with [DONE]');
my @o = map { decode_json($_) } @c[0 .. $#c - 1];
my @words = split / /, join('', map {
    $_->{choices}[0]{delta}{content} // '' } @o);
is(scalar(@words), 1998, 'every word of it');
cmp_ok(scalar(@o), '>=', 2000, 'a chunk an event');

pool_ok('Anthropic to OpenAI');

# --- a long stream, OpenAI's, to an Anthropic client ------------------

$res = $ngx->request('POST', '/long/v1/messages', \%anthropic,
    '{"model":"gpt-long","max_tokens":4000,"stream":true,'
    . '"messages":[{"role":"user","content":"hello"}]}');
is($res->{status}, 200, 'a long stream from OpenAI: 200');
my @e = events($res->{body});
is($e[-1][0], 'message_stop', 'it ends with message_stop');
@words = split / /, join('', map { $_->[0] eq 'content_block_delta'
    ? decode_json($_->[1])->{delta}{text} : '' } @e);
is(scalar(@words), 1998, 'every word of it');

pool_ok('OpenAI to Anthropic');

# --- paced streams, an event a read, both ways ------------------------

$res = $ngx->request('POST', '/v1/chat/completions', {},
    '{"model":"haiku-paced","stream":true,'
    . '"messages":[{"role":"user","content":"hello"}]}');
@c = chunks($res->{body});
is($c[-1], '[DONE]', 'a paced stream from Anthropic ends with [DONE]');
@o = map { decode_json($_) } @c[0 .. $#c - 1];
@words = split / /, join('', map {
    $_->{choices}[0]{delta}{content} // '' } @o);
is(scalar(@words), 40, 'every word of it');

$res = $ngx->request('POST', '/v1/messages', \%anthropic,
    '{"model":"gpt-paced","max_tokens":400,"stream":true,'
    . '"messages":[{"role":"user","content":"hello"}]}');
@e = events($res->{body});
is($e[-1][0], 'message_stop', 'a paced stream from OpenAI ends so');
@words = split / /, join('', map { $_->[0] eq 'content_block_delta'
    ? decode_json($_->[1])->{delta}{text} : '' } @e);
is(scalar(@words), 40, 'every word of it');

# --- events larger than 16 KB -----------------------------------------

# (max_tokens: the mock's answer stops there, 4 characters a token)
$res = $ngx->request('POST', '/v1/chat/completions', {},
    '{"model":"haiku-big","stream":true,"max_tokens":20000,'
    . '"messages":[{"role":"user","content":"hello"}]}');
@c = chunks($res->{body});
like($c[-1], qr/"code":"stream_untranslatable"/,
     'an event past 16 KB: the stream ends with the error');
unlike($res->{body}, qr/\[DONE\]/, 'not with a clean end');
like($ngx->error_log, qr/an event of provider "claudebig" is larger than aigw_translate_buffer/,
     'the error log says why');

$res = $ngx->request('POST', '/big/v1/chat/completions', {},
    '{"model":"haiku-big","stream":true,"max_tokens":20000,'
    . '"messages":[{"role":"user","content":"hello"}]}');
@c = chunks($res->{body});
is($c[-1], '[DONE]', 'with aigw_translate_buffer 64k: translated whole');
@o = map { decode_json($_) } @c[0 .. $#c - 1];
my @big = grep { length($_) >= 20000 }
          map { $_->{choices}[0]{delta}{content} // '' } @o;
cmp_ok(scalar(@big), '>=', 1, 'events of 20,000 characters, as they came');
@words = split / /, join('', map {
    $_->{choices}[0]{delta}{content} // '' } @o);
is(scalar(@words), 6000, 'every word of it');

$res = $ngx->request('POST', '/big/v1/messages', \%anthropic,
    '{"model":"gpt-big","max_tokens":20000,"stream":true,'
    . '"messages":[{"role":"user","content":"hello"}]}');
@e = events($res->{body});
is($e[-1][0], 'message_stop', 'and the other way');
@words = split / /, join('', map { $_->[0] eq 'content_block_delta'
    ? decode_json($_->[1])->{delta}{text} : '' } @e);
is(scalar(@words), 6000, 'every word of it');

# --- a key twice in an object the translation reads -------------------

$res = $ngx->request('POST', '/v1/chat/completions', {},
    '{"model":"haiku","messages":[{"role":"user","content":'
    . '[{"type":"text","text":"a","text":"b"}]}]}');
is($res->{status}, 400, 'a text part with "text" twice: 400');
my $err = eval { decode_json($res->{body}) } || {};
is($err->{error}{code}, 'unsupported_parameter', 'unsupported_parameter');
like($err->{error}{message}, qr/'messages'.*a key twice/,
     'naming the field, and why');

$res = $ngx->request('POST', '/v1/messages', \%anthropic,
    '{"model":"haiku","max_tokens":10,"messages":[{"role":"user",'
    . '"content":"a"}],"tools":[{"name":"f","n\\u0061me":"g"}]}');
is($res->{status}, 200, 'a key twice to an Anthropic provider: not ours');

$res = $ngx->request('POST', '/v1/chat/completions', {},
    '{"model":"haiku","messages":[{"role":"user","content":'
    . '[{"typ\\u0065":"text","text":"hi"}]}]}');
is($res->{status}, 200, 'a key escaped is read as it unescapes');

$res = $ngx->request('POST', '/v1/chat/completions', {},
    '{"model":"haiku","tools":[{"type":"function","function":'
    . '{"name":"f","n\\u0061me":"g"}}],'
    . '"messages":[{"role":"user","content":"hi"}]}');
is($res->{status}, 400, 'a tool with "name" twice, one escaped: 400');

done_testing();
