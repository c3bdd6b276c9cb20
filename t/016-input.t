# Client input the gateway refuses itself, before any provider is called:
# fields of the wrong type or missing, a message without a role, text that
# a policy step could not read (a NUL, invalid UTF-8), nesting past the
# scan's limit.  Each is a 400 in the client's format naming the field,
# with a line in the error log.  And what must still pass does.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use IO::Socket::INET;
use Test::More;

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

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
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model emb ok:text-embedding-3-small;
    aigw_model instruct ok:gpt-3.5-turbo-instruct;
    aigw_model haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

my $chat = '/v1/chat/completions';
my $msgs = '"messages":[{"role":"user","content":"hi"}]';

sub refused {
    my ($name, $path, $body, $code, $message) = @_;
    mock_reset();
    my $res = $ngx->request('POST', $path, {}, $body);
    is($res->{status}, 400, "$name: 400");
    like($res->{body}, qr/"code":"\Q$code\E"/, "$name: $code")
        if $path ne '/v1/messages';
    like($res->{body}, $message, "$name: the message names it");
    is(mock_stats()->{requests}, 0, "$name: no provider called");
}

sub passes {
    my ($name, $path, $body) = @_;
    my $res = $ngx->request('POST', $path, {}, $body);
    is($res->{status}, 200, "$name: 200") or diag $res->{body};
}

# messages

refused('messages a string', $chat, '{"model":"gpt-4o","messages":"x"}',
        'invalid_type', qr/Invalid type for 'messages': expected an array of objects, but got a string instead/);
refused('messages an object', $chat,
        '{"model":"gpt-4o","messages":{"role":"user"}}',
        'invalid_type', qr/'messages'.*but got an object/);
refused('messages missing', $chat, '{"model":"gpt-4o"}',
        'missing_required_parameter',
        qr/Missing required parameter: 'messages'\./);
refused('a message not an object', $chat,
        '{"model":"gpt-4o","messages":[{"role":"user","content":"a"},"x"]}',
        'invalid_type', qr/'messages\[1\]': expected an object, but got a string/);
refused('a message without a role', $chat,
        '{"model":"gpt-4o","messages":[{"role":"user","content":"a"},'
        . '{"content":"b","x":{"role":"user"}}]}',
        'missing_required_parameter',
        qr/Missing required parameter: 'messages\[1\]\.role'/);
refused('a role that is not a string', $chat,
        '{"model":"gpt-4o","messages":[{"content":"a", "role" : 1}]}',
        'invalid_type', qr/'messages\[0\]\.role': expected a string, but got a number/);
refused('an Anthropic message without a role', '/v1/messages',
        '{"model":"haiku","max_tokens":5,"messages":[{"content":"a"}]}',
        'missing_required_parameter',
        qr/^\{"type":"error","error":\{"type":"invalid_request_error","message":"Missing required parameter: 'messages\[0\]\.role'/);
refused('Anthropic messages null', '/v1/messages',
        '{"model":"haiku","max_tokens":5,"messages":null}',
        'invalid_type', qr/'messages'.*but got null/);

# stream, max_tokens

refused('stream a string', $chat, qq'{"model":"gpt-4o","stream":"yes",$msgs}',
        'invalid_type', qr/stream\\" must be a boolean/);
refused('max_tokens negative', $chat,
        qq'{"model":"gpt-4o","max_tokens":-1,$msgs}', 'invalid_type',
        qr/Invalid type for 'max_tokens': expected a non-negative integer/);
refused('max_tokens a fraction', $chat,
        qq'{"model":"gpt-4o","max_tokens":1.5,$msgs}', 'invalid_type',
        qr/'max_tokens'/);
refused('max_tokens a string', '/v1/messages',
        qq'{"model":"haiku","max_tokens":"5",$msgs}', 'invalid_type',
        qr/'max_tokens'/);
refused('max_completion_tokens 1e3', $chat,
        qq'{"model":"gpt-4o","max_completion_tokens":1e3,$msgs}',
        'invalid_type', qr/'max_completion_tokens'/);

# input, prompt

refused('input missing', '/v1/embeddings', '{"model":"emb"}',
        'missing_required_parameter', qr/Missing required parameter: 'input'/);
refused('input a number', '/v1/embeddings', '{"model":"emb","input":5}',
        'invalid_type', qr/Invalid type for 'input'/);
refused('input an array of objects', '/v1/embeddings',
        '{"model":"emb","input":[{"text":"a"}]}',
        'invalid_type', qr/'input'/);
refused('input token arrays of strings', '/v1/embeddings',
        '{"model":"emb","input":[[1,2],["a"]]}', 'invalid_type', qr/'input'/);
refused('prompt an object', '/v1/completions',
        '{"model":"instruct","prompt":{"a":1}}', 'invalid_type',
        qr/Invalid type for 'prompt'/);

# text a policy step must read

refused('\u0000 in content', $chat,
        '{"model":"gpt-4o","messages":[{"role":"user","content":"a\u0000b"}]}',
        'invalid_value', qr/Invalid value for 'messages': its text has a NUL character/);
refused('\u0000 in a text part', $chat,
        '{"model":"gpt-4o","messages":[{"role":"user","content":'
        . '[{"type":"text","text":"\u0000"}]}]}',
        'invalid_value', qr/NUL character/);
refused('invalid UTF-8 in content', $chat,
        qq'{"model":"gpt-4o","messages":[{"role":"user","content":"a\xff"}]}',
        'invalid_value', qr/'messages': its text has invalid UTF-8/);
refused('a surrogate in UTF-8', $chat,
        qq'{"model":"gpt-4o","messages":[{"role":"user","content":"\xed\xa0\x80"}]}',
        'invalid_value', qr/invalid UTF-8/);
refused('an overlong form', '/v1/embeddings',
        qq'{"model":"emb","input":["ok","\xc0\xaf"]}',
        'invalid_value', qr/'input': its text has invalid UTF-8/);
refused('a cut sequence in system', '/v1/messages',
        qq'{"model":"haiku","max_tokens":5,"system":"\xe2\x82",$msgs}',
        'invalid_value', qr/'system': its text has invalid UTF-8/);
refused('a raw NUL', $chat,
        qq'{"model":"gpt-4o","messages":[{"role":"user","content":"a\x00"}]}',
        'invalid_json', qr/not valid JSON/);
refused('a NUL between values', $chat, qq'{"model":"gpt-4o",\x00$msgs}',
        'invalid_json', qr/not valid JSON/);
refused('nested too deeply', $chat,
        qq'{"model":"gpt-4o",$msgs,"x":' . ('[' x 70) . (']' x 70) . '}',
        'invalid_json', qr/nested too deeply \(more than 64 levels\)/);

# what is valid still passes

passes('roles and escapes', $chat,
       '{"model":"gpt-4o","messages":[ {"r\u006fle":"user","content":'
       . '"caf\u00e9 \\\\u0000 \ud83d\ude00 \u00ff"} , {"content":[{"type":'
       . '"text","text":"x"}],"name":"{\"role\"","role":"assistant"}]}');
passes('UTF-8 of every length', $chat,
       qq'{"model":"gpt-4o","messages":[{"role":"user","content":'
       . qq'"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}]}');
passes('null max_tokens and stream', $chat,
       qq'{"model":"gpt-4o","max_tokens":null,"stream":null,$msgs}');
passes('max_tokens 0 and 4096', $chat,
       qq'{"model":"gpt-4o","max_tokens":0,"max_completion_tokens":4096,'
       . qq'$msgs}');
passes('input strings', '/v1/embeddings', '{"model":"emb","input":["a","b"]}');
passes('input tokens', '/v1/embeddings', '{"model":"emb","input":[1,2,3]}');
passes('input token arrays', '/v1/embeddings',
       '{"model":"emb","input":[[1,2],[ 3 ]]}');
passes('prompt a string', '/v1/completions',
       '{"model":"instruct","prompt":"x"}');
passes('invalid UTF-8 outside text', $chat,
       qq'{"model":"gpt-4o","metadata":{"x":"\xff"},$msgs}');

# a chunked body, small and in pieces (a NULL buffer was copied once)

sub chunked {
    my (@chunks) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 10) or return '';
    print $s "POST $chat HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    for my $c (@chunks) {
        print $s sprintf("%x\r\n%s\r\n", length $c, $c);
    }
    print $s "0\r\n\r\n";
    local $/;
    return <$s> // '';
}

my $body = qq'{"model":"gpt-4o",$msgs}';

like(chunked($body), qr{^HTTP/1\.1 200 .*Mock answer}s,
     'a chunked body in one chunk');
like(chunked(split //, $body), qr{^HTTP/1\.1 200 .*Mock answer}s,
     'a chunked body a byte a chunk');
like(chunked('{"model":"gpt-4o",', '"messages":"x"}'),
     qr{^HTTP/1\.1 400 .*'messages'}s, 'a chunked body refused');

my $log = $ngx->error_log;
like($log, qr/\[info\].*aigw: request refused: Invalid type for 'messages'/,
     'the error log says why');
like($log, qr/\[info\].*aigw: request body is nested too deeply/,
     'nesting: the error log says so');
unlike($log, qr/\[(alert|crit|emerg)\]/, 'nothing worse in the log');

done_testing;
